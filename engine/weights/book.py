"""The book's own files: a state_dict of its GPTModel, saved with torch.save (.pth/.pt) or as .safetensors.

Book .pth files are memory-mapped by torch.load and used in place, so the
peak is about one copy of the weights. torch.load runs with weights_only=True:
a file that holds pickled objects other than tensors is refused, never run.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from engine.errors import CheckpointError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel, _is_book_mask
from engine.weights.gpt2 import as_checkpoint_config, config_from_shapes, layer_count
from engine.weights.tensor_files import check_model_state, first_line, model_from_state, reading_safetensors

BOOK_SUFFIXES = (".safetensors", ".pth", ".pt")


def load_book_state_dict(path: str | Path, cfg: GPTConfig | Mapping[str, Any] | None = None,
                         device: str | torch.device = "cpu") -> GPTModel:
    """A state_dict saved from the book's GPTModel (.pth/.pt, or .safetensors with the book's names).

    Without `cfg` the config is read off the tensor shapes; the number of heads
    only for GPT-2's widths (768, 1024, 1280, 1600). The model is in eval mode.
    """
    path = Path(path).expanduser()
    state = {k: v for k, v in _read_book_state(path).items() if not _is_book_mask(k)}
    config = as_checkpoint_config(cfg, path) if cfg is not None else _config_from_book_shapes(state, path)
    if config.tie_embeddings:
        head = state.pop("out_head.weight", None)
        if head is not None and not _same_tensor(head, state.get("tok_emb.weight")):
            raise CheckpointError(f"{path} holds an output head of its own, but the config ties it to tok_emb")
    check_model_state(config, state, path)
    return model_from_state(config, state, device, path)


def _read_book_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        with reading_safetensors(path) as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        # mmap keeps the weights in the file's pages; only torch.save's zip format can be mapped.
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled Python objects, not just tensors; "
                              "refused to load it, since unpickling them could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, or not saved by torch.save): "
                              f"{first_line(exc)}") from None
    if isinstance(loaded, Mapping) and "model_state_dict" in loaded:
        loaded = loaded["model_state_dict"]  # the book's model_and_optimizer.pth
    if not (isinstance(loaded, Mapping) and loaded
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())):
        raise CheckpointError(f"{path} does not hold a model state_dict (a dict of named tensors)")
    return dict(loaded)


def _config_from_book_shapes(state: Mapping[str, torch.Tensor], path: Path) -> GPTConfig:
    if "tok_emb.weight" not in state:
        raise CheckpointError(f"{path} holds no tok_emb.weight: not a state_dict of the book's GPTModel")
    # Saved from a tied model, the head is the embedding's storage. The book's
    # GPT-2 loader copies the embedding into the head instead: untied, as the book trains it.
    out = state.get("out_head.weight")
    tied = out is None or out.data_ptr() == state["tok_emb.weight"].data_ptr()
    pos = state.get("pos_emb.weight")
    return config_from_shapes(path, tuple(state["tok_emb.weight"].shape), None if pos is None else tuple(pos.shape),
                              layer_count(state, "trf_blocks."), drop_rate=0.0,
                              qkv_bias="trf_blocks.0.att.W_query.bias" in state, tie_embeddings=tied)


def _same_tensor(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    return b is not None and a.shape == b.shape and (a.data_ptr() == b.data_ptr() or torch.equal(a, b))
