"""GPTModel's weights under GPT-2's tensor names and back, in memory.

The mapping itself is engine.weights.gpt2's plan for reading GPT-2 files (`_hf_plan`):
each GPT-2 tensor with the GPTModel tensors it holds, query/key/value fused
along the output axis, and linear weights stored as GPT-2's Conv1D keeps them,
[in, out]. Exports (Hugging Face, GGUF) walk it forwards; the importers of other
programs' checkpoints (nanoGPT, llm.c) bring their tensors to these names and
walk it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.weights.gpt2 import _hf_plan, _read_converted
from engine.weights.tensor_files import check_shapes, model_from_state

# GPT-2's matrices that Conv1D stores as [in, out]; nanoGPT, llm.c and GGUF keep nn.Linear's [out, in].
CONV1D_WEIGHTS = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def transpose_conv1d(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors with GPT-2's Conv1D matrices transposed: Conv1D layout <-> nn.Linear layout (views)."""
    return {name: t.t() if name.endswith(CONV1D_WEIGHTS) else t for name, t in tensors.items()}


def to_gpt2_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    """GPT-2's tensors (names without `transformer.`, Conv1D layout), contiguous and on the CPU.

    A model without query/key/value biases gets zero biases, which compute the same;
    a tied model has no `lm_head.weight`.
    """
    state = model.state_dict()
    tensors = {}
    for source in _hf_plan(model.cfg):
        parts = [state.get(target) for target in source.targets]
        if any(part is None for part in parts):  # only the biases a model without qkv_bias lacks
            parts = [torch.zeros(source.shape[-1] // len(parts), dtype=state["tok_emb.weight"].dtype)] * len(parts)
        if source.conv1d:
            parts = [part.t() for part in parts]
        joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        tensors[source.name] = joined.detach().to("cpu").contiguous()
    return tensors


class _InMemory:
    """The one method of a safetensors file that `_read_converted` reads through."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._tensors = tensors

    def get_tensor(self, name: str) -> torch.Tensor:
        return self._tensors[name]


def from_gpt2_tensors(cfg: GPTConfig, tensors: Mapping[str, torch.Tensor], source: Path,
                      device: str | torch.device = "cpu") -> GPTModel:
    """A GPTModel (eval mode) from GPT-2's tensors in the Conv1D layout; CheckpointError if they do not fit.

    Without `cfg.qkv_bias` the tensors hold no query/key/value biases (`h.N.attn.c_attn.bias`).
    """
    plan = [s for s in _hf_plan(cfg) if cfg.qkv_bias or not s.name.endswith(".attn.c_attn.bias")]
    check_shapes({s.name: s.shape for s in plan}, {n: tuple(t.shape) for n, t in tensors.items()}, source,
                  "the GPT-2 layout")
    files = _InMemory(tensors)
    state: dict[str, torch.Tensor] = {}
    for entry in plan:
        state.update(_read_converted(files, entry.name, entry, "cpu", tensors[entry.name].dtype))
    return model_from_state(cfg, state, device)
