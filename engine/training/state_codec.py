"""Training state (optimizer state, RNG states, counters) as tensors plus JSON, never pickle.

`state_to_tensors` splits a nested structure into a flat dict of tensors (for
safetensors) and a JSON-able skeleton that refers to them by name;
`tensors_to_state` puts them back together. What JSON cannot say on its own is
tagged with a one-key object: non-string dict keys (an optimizer's `state` is
keyed by parameter index), tuples (AdamW's `betas`), non-finite floats, tensors.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_DICT = "__dict__"  # a dict whose keys are not all plain strings: a list of [key, value] pairs
_FLOAT = "__float__"  # nan, inf, -inf
_TAGS = {_TENSOR, _TUPLE, _DICT, _FLOAT}


def state_to_tensors(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split `obj` into (tensors by name, JSON-able skeleton); the same tensor object is stored once."""
    tensors: dict[str, torch.Tensor] = {}
    names: dict[int, str] = {}

    def encode(value: Any, where: str) -> Any:
        if isinstance(value, torch.Tensor):
            name = names.get(id(value))
            if name is None:
                name = names[id(value)] = f"t{len(tensors)}"
                tensors[name] = value.detach()
            return {_TENSOR: name}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {_FLOAT: repr(value)}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
                return {k: encode(v, f"{where}.{k}") for k, v in value.items()}
            return {_DICT: [[encode(k, where), encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        raise TypeError(f"cannot store {type(value).__name__} at {where} in a checkpoint")

    return tensors, encode(obj, "state")


def tensors_to_state(tensors: dict[str, torch.Tensor], meta: Any) -> Any:
    """Rebuild what `state_to_tensors` split; raises ValueError if a referenced tensor is missing."""

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            tag, inner = next(iter(value.items()))
            if tag == _TENSOR:
                if inner not in tensors:
                    raise ValueError(f"training state refers to a missing tensor {inner!r}")
                return tensors[inner]
            if tag == _TUPLE:
                return tuple(decode(v) for v in inner)
            if tag == _DICT:
                return {decode(k): decode(v) for k, v in inner}
            if tag == _FLOAT:
                return float(inner)
        return {k: decode(v) for k, v in value.items()}

    return decode(meta)

