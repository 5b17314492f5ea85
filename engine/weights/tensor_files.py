"""Tensors in safetensors files, the one check that a set of weights fits a model, and building it from them."""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from engine.errors import CheckpointError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel, meta_model

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
_T = TypeVar("_T")


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
        raise CheckpointError(f"checkpoint file {path} is corrupt: {first_line(exc)}") from exc


class SafetensorsReader:
    """An open safetensors file whose own read errors become CheckpointError naming the file.

    Only the calls that touch the file are translated: an error raised by the
    caller's code between them is the caller's, and goes through unchanged.
    """

    def __init__(self, handle: Any, path: Path):
        self._handle, self.path = handle, path

    def keys(self) -> list[str]:
        return self._reading(lambda: list(self._handle.keys()))

    def get_tensor(self, name: str) -> torch.Tensor:
        return self._reading(lambda: self._handle.get_tensor(name))

    def get_slice(self, name: str) -> Any:
        """The tensor's header entry (get_shape, get_dtype) without reading its data."""
        return self._reading(lambda: self._handle.get_slice(name))

    def _reading(self, read: Callable[[], _T]) -> _T:
        try:
            return read()
        except (SafetensorError, OSError) as exc:
            raise _not_valid(self.path, exc) from None


@contextmanager
def reading_safetensors(path: Path) -> Iterator[SafetensorsReader]:
    """A safetensors file opened for reading one tensor at a time, with pread rather than a memory map.

    Pages read through a map count as the process's memory until the file is
    closed, which would double the peak of loading a model.
    """
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        try:
            handle = safe_open(str(path), framework="pt", backend="pread")
        except TypeError:  # safetensors < 0.8 reads only through a memory map
            handle = safe_open(str(path), framework="pt")
    except (SafetensorError, OSError) as exc:
        raise _not_valid(path, exc) from None
    with handle as f:
        yield SafetensorsReader(f, path)


def safetensors_names(path: Path) -> list[str]:
    with reading_safetensors(path) as f:
        return f.keys()


def _not_valid(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt?): {first_line(exc)}")


def check_shapes(expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, tuple[int, ...]], source: Any,
                 against: Any, optional: Collection[str] = ()) -> None:
    """CheckpointError naming the first few misshapen, missing or unexpected tensors, if any.

    `optional` names may be absent (a tied output head is stored once, as the embedding).
    """
    problems = [f"{name} has shape {list(actual[name])}, expected {list(shape)}"
                for name, shape in expected.items() if name in actual and tuple(actual[name]) != tuple(shape)]
    problems += [f"missing {name}" for name in expected if name not in actual and name not in optional]
    problems += [f"unexpected {name}" for name in actual if name not in expected]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(f"{source} does not match {against}: {'; '.join(problems[:4])}{more}")


def check_model_state(config: GPTConfig, state: Mapping[str, torch.Tensor], source: Any) -> None:
    """Raise CheckpointError unless `state` has exactly the tensor names and shapes `config` needs."""
    check_shapes(_expected_shapes(config), {name: tuple(t.shape) for name, t in state.items()}, source,
                 "the model config", optional={"out_head.weight"} if config.tie_embeddings else ())


def _all_finite(tensor: torch.Tensor) -> bool:
    # The smallest and largest elements are finite exactly when all are (both propagate NaN):
    # one vectorised pass, without a mask of the tensor's size (a 124M model: 16 ms, not 270).
    if tensor.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor))).all())


def model_from_state(config: GPTConfig, state: dict[str, torch.Tensor], device: str | torch.device,
                     source: Any = "the weights") -> GPTModel:
    """A GPTModel in eval mode that takes over `state`'s tensors, with no random weights allocated first."""
    # A model with NaN or inf weights only ever produces garbage (or fails inside sampling): refuse it here.
    for name, tensor in state.items():
        if tensor.is_floating_point() and not _all_finite(tensor):
            raise CheckpointError(f"{source} holds non-finite values (NaN or inf) in {name}")
    model = meta_model(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@lru_cache(maxsize=16)
def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in meta_model(config).state_dict().items()}
