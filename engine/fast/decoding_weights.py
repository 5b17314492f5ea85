"""Copies of a model laid out for fast token-by-token decoding.

Decoding one token at a time multiplies a single vector by every weight
matrix, so its speed is how fast the weights stream from memory. Three
layouts, for `generate`/`stream` on the copy:

- "fp32": the same numbers, each linear weight stored input-major (the layout
  the CPU's matrix-vector product reads fastest) and cut into one column block
  per core, multiplied as one batched product: the BLAS runs a matrix-vector
  product on a single core, a batch of them on all. Tokens equal the model's.
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
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.model.gpt import GPTModel

DECODING_WEIGHTS = ("fp32", "bf16", "int8")
# The int8 kernel is made for a few rows (decoding); a long prompt is multiplied
# faster by the dequantized bf16 matrix.
DEQUANTIZE_ABOVE_ROWS = 16


def decoding_copy(model: GPTModel, weights: str = "fp32", in_place: bool = False) -> GPTModel:
    """An eval-mode copy of `model` for generation only, with `weights` as above.

    `in_place` converts `model` itself, for a caller that needs nothing else of it
    (`tui-gpt generate`): no copy of every weight first, and half the peak memory.
    """
    if weights not in DECODING_WEIGHTS:
        raise ConfigError(f"decoding weights must be one of {', '.join(DECODING_WEIGHTS)}, got {weights!r}")
    fast = (model if in_place else copy.deepcopy(model)).eval().requires_grad_(False)
    if weights == "fp32":
        parts = torch.get_num_threads() if fast.tok_emb.weight.device.type == "cpu" else 1
        for parent, name, module in _linear_slots(fast):
            setattr(parent, name, CoreSplitLinear(module, parts))
        return fast
    fast = fast.to(torch.bfloat16)
    if weights == "int8":
        _require_int8_kernel(fast.tok_emb.weight.device)
        for parent, name, module in _linear_slots(fast):
            setattr(parent, name, Int8Linear(module))
    return fast


class CoreSplitLinear(nn.Module):
    """A linear layer whose weight is stored as `parts` input-major column blocks.

    y = x W^T + b is computed as one batched product, block by block, so that
    each block streams from memory on its own core.
    """

    def __init__(self, linear: nn.Linear, parts: int):
        super().__init__()
        weight = linear.weight.detach()
        out_features, in_features = weight.shape
        per_part = -(-out_features // parts)
        padded = F.pad(weight, (0, 0, 0, per_part * parts - out_features))  # zero rows, sliced off the output
        self.register_buffer("blocks", padded.view(parts, per_part, in_features).transpose(1, 2).contiguous())
        self.out_features = out_features
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts, in_features, per_part = self.blocks.shape
        rows = x.reshape(1, -1, in_features).expand(parts, -1, -1)
        y = torch.bmm(rows, self.blocks).transpose(0, 1).reshape(*x.shape[:-1], parts * per_part)
        y = y[..., : self.out_features]
        return y if self.bias is None else y + self.bias


class Int8Linear(nn.Module):
    """A linear layer with symmetric per-output-row int8 weights and bf16 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        # Quantize against the scale as stored (bf16), so that rounding it costs nothing.
        scale = (weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0).to(torch.bfloat16)
        quantized = torch.round(weight / scale.float()[:, None]).clamp(-127, 127)
        self.register_buffer("weight_int8", quantized.to(torch.int8))
        self.register_buffer("scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        if flat.shape[0] > DEQUANTIZE_ABOVE_ROWS:
            y = F.linear(flat, self.weight_int8.to(torch.bfloat16) * self.scale[:, None])
        else:
            y = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], -1)


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


def prompting_model(model: GPTModel, in_place: bool = False) -> GPTModel:
    """What prompting should run: on a CPU the fp32 decoding copy (the same tokens,
    about twice the speed; see BENCHMARKS.md), elsewhere the model itself."""
    if model.tok_emb.weight.device.type == "cpu":
        return decoding_copy(model, "fp32", in_place)
    return model.eval()
