"""torch.compile for training steps, where the machine can compile.

On a GPU, inductor writes Triton kernels; on a CPU it writes C++ and needs a
C++ compiler. Where there is none, compiling would fail at the first step, deep
inside the run; `compile_for_training` says so in one line instead and leaves
the model as it is. Compiling happens lazily at the first step (and again when
the model switches between training and evaluation), so the first step's time
includes it; the trainer reports that once.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable

import torch

# What inductor tries on a CPU (torch._inductor's cpp builder): $CXX, then these.
_CPU_COMPILERS = ("g++", "c++", "clang++")


def cpu_compiler() -> str | None:
    """The C++ compiler inductor would use on a CPU, or None when there is none."""
    candidates = ((os.environ["CXX"],) if os.environ.get("CXX") else ()) + _CPU_COMPILERS
    return next((found for name in candidates if (found := shutil.which(name))), None)


def compile_for_training(model: torch.nn.Module, device: torch.device,
                         say: Callable[[str], None]) -> torch.nn.Module:
    """`torch.compile(model)`, or the model itself (after one line through `say`) where it cannot be."""
    if device.type == "cpu" and cpu_compiler() is None:
        say("warning: --compile needs a C++ compiler on the CPU (none found: $CXX, g++, c++, clang++); "
            "training uncompiled")
        return model
    return torch.compile(model)
