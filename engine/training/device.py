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
    """bf16 autocast where the GPU runs it natively; None means plain fp32."""
    if precision == "fp32" or device.type != "cuda":
        if precision == "bf16" and device.type != "cuda":
            raise ConfigError("precision 'bf16' needs a CUDA GPU; use 'auto' or 'fp32' on this device")
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "bf16":
        raise ConfigError("precision 'bf16' asked for, but this GPU does not support bf16")
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
