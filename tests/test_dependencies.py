"""pyproject.toml declares the torch that has every API the code calls."""

from __future__ import annotations

import re
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

# The torch APIs the engine calls that came late, and the release that brought each (from PyTorch's
# release notes and pull requests: pytorch/pytorch#139662 for the first two, #121702 for the error).
LATE_APIS = {
    "torch.nn.utils.get_total_norm": (2, 6),
    "torch.nn.utils.clip_grads_with_norm_": (2, 6),
    "torch.OutOfMemoryError": (2, 5),
}


def declared_torch_minimum() -> tuple[int, int]:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    major, minor = re.search(r'"torch>=(\d+)\.(\d+)', text).groups()
    return int(major), int(minor)


def test_the_declared_torch_has_every_late_api_the_code_calls():
    assert declared_torch_minimum() >= max(LATE_APIS.values())


def test_the_late_apis_are_the_ones_the_code_calls():
    sources = "".join(path.read_text(encoding="utf-8") for path in (REPO / "engine").rglob("*.py"))
    for api in LATE_APIS:
        assert api in sources, api
        found = torch
        for part in api.split(".")[1:]:
            found = getattr(found, part)  # AttributeError: this torch lacks it
