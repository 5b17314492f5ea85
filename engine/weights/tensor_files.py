"""Tensors in safetensors files, and the one check that a set of weights fits a model config."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError
from engine.model.config import GPTConfig
from engine.model.gpt import meta_model

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    try:
        save_file(plain, path)
    except SafetensorError as exc:
        # safetensors reports I/O failures (a full disk) with the errno only in its message.
        found = _OS_ERROR_IN_TEXT.search(str(exc))
        if found is None:
            raise
        raise OSError(int(found[1]), str(exc)) from exc


def load_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=str(device))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint file {path} is corrupt: {reason}") from exc


def check_model_state(config: GPTConfig, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise CheckpointError unless `state` has exactly the tensor names and shapes `config` needs."""
    expected = _expected_shapes(config)
    optional = {"out_head.weight"} if config.tie_embeddings else set()
    problems = [f"missing {name}" for name in expected if name not in state and name not in optional]
    for name, tensor in state.items():
        if name not in expected:
            problems.append(f"unexpected {name}")
        elif tuple(tensor.shape) != expected[name]:
            problems.append(f"{name} has shape {list(tensor.shape)}, expected {list(expected[name])}")
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"weights in {source} do not fit the model config: {'; '.join(problems[:4])}{more}")
    # A model with NaN or inf weights only ever produces garbage (or fails inside sampling): refuse it here.
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"weights in {source} hold non-finite values (NaN or inf) in {name}")


@lru_cache(maxsize=16)
def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in meta_model(config).state_dict().items()}
