"""Choosing the compute device and the mixed-precision context."""

from __future__ import annotations

import contextlib

import torch

from engine.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but no CUDA GPU is available (try --device cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' asked for, but Apple's MPS is not available (try --device cpu)")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 autocast (fp32 master weights) where asked, or with 'auto' where the hardware runs
    bf16 natively: a CUDA GPU that supports it, a CPU with bf16 instructions; None means fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if precision == "bf16":
            raise ConfigError("precision 'bf16' asked for, but this GPU does not support bf16")
        return None
    if device.type == "cpu":
        # Without native instructions bf16 is emulated: slower than fp32, so only when asked.
        return torch.bfloat16 if precision == "bf16" or cpu_has_native_bf16() else None
    if precision == "bf16":
        raise ConfigError(f"precision 'bf16' is not supported on {device.type}; use 'auto' or 'fp32'")
    return None


# CPU feature flags (Linux's /proc/cpuinfo) of bf16 matrix instructions: x86's AVX-512 BF16
# and AMX, Arm's BF16 extension.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (read from /proc/cpuinfo; False where unknown)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and _BF16_FLAGS & set(value.split()):
            return True
    return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
