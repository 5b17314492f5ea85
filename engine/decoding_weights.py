"""Copies of a model laid out for fast token-by-token decoding.

Decoding one token at a time multiplies a single vector by every weight
matrix, so its speed is how fast the weights stream from memory. Three
layouts, for `generate`/`stream` on the copy:

- "fp32": the same numbers, each linear weight stored input-major, the layout
  that the CPU's matrix-vector product reads fastest; tokens equal the model's.
- "bf16": every weight in bfloat16, half the bytes (the GPU decoding path).
- "int8": linear weights in int8 with one bfloat16 scale per output row, the
  rest in bfloat16; a quarter of the bytes of the matrices.

The reduced-precision copies compute slightly different logits, so greedy
decoding may pick a different token where two are nearly tied; the benchmark
reports how often they agree with fp32.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .errors import ConfigError
from .model import GPTModel

DECODING_WEIGHTS = ("fp32", "bf16", "int8")


def decoding_copy(model: GPTModel, weights: str = "fp32") -> GPTModel:
    """An eval-mode copy of `model` for generation only, with `weights` as above."""
    if weights not in DECODING_WEIGHTS:
        raise ConfigError(f"decoding weights must be one of {', '.join(DECODING_WEIGHTS)}, got {weights!r}")
    tied = model.out_head.weight is model.tok_emb.weight
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    if weights == "fp32":
        for module in _linears(fast):
            module.weight = nn.Parameter(_input_major(module.weight), requires_grad=False)
        if tied:
            fast.tok_emb.weight = fast.out_head.weight
        return fast
    fast = fast.to(torch.bfloat16)
    if weights == "int8":
        _require_int8_kernel(fast.tok_emb.weight.device)
        for parent, name, module in _linear_slots(fast):
            setattr(parent, name, Int8Linear(module))
    return fast


class Int8Linear(nn.Module):
    """A linear layer with symmetric per-output-row int8 weights and bf16 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


def _input_major(weight: torch.Tensor) -> torch.Tensor:
    """The same (out, in) matrix, its storage transposed: rows of inputs are contiguous."""
    return weight.detach().t().contiguous().t()


def _linears(model: nn.Module):
    return [module for _, _, module in _linear_slots(model)]


def _linear_slots(model: nn.Module):
    return [(parent, name, child) for parent in model.modules()
            for name, child in parent.named_children() if isinstance(child, nn.Linear)]


def _require_int8_kernel(device: torch.device) -> None:
    probe = torch.ones(1, 8, dtype=torch.bfloat16, device=device)
    try:
        torch._weight_int8pack_mm(probe, torch.ones(1, 8, dtype=torch.int8, device=device),
                                  torch.ones(1, dtype=torch.bfloat16, device=device))
    except (AttributeError, RuntimeError, NotImplementedError):
        raise ConfigError(f"int8 decoding is not available with torch {torch.__version__} on {device.type}; "
                          "use fp32 or bf16 decoding weights") from None
