"""What a list of runs shows about each run, cheap enough to refresh every couple of seconds.

The only costly part, what `metrics.jsonl` says, comes from engine.runs.progress,
which parses only the lines appended since the last refresh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.model.config import GPTConfig
from engine.runs.progress import RunProgress


@dataclass(frozen=True)
class RunSummary:
    name: str
    model: str  # e.g. "gpt-nano, 6.9M params"
    steps: int  # optimizer steps done
    best_val_loss: float | None
    best_val_ppl: float | None
    updated: datetime  # when its status or metrics last changed (local time, tz-aware)
    size_bytes: int
    state: str  # "new", "running", "finished", "stopped" or "failed"
    message: str = ""  # the status message: why it stopped or failed
    # Everything its events say (samples, evaluations, ETA): a copy no later poll changes.
    progress: RunProgress = field(default_factory=RunProgress, repr=False, compare=False)


def describe_model(config: dict[str, Any]) -> str:
    """A short description of a run's model from its config.json, e.g. "gpt-nano, 6.9M params"."""
    if not isinstance(config.get("model"), dict):
        return "?"
    try:
        model = GPTConfig.from_dict(config["model"])
    except (ConfigError, TypeError):
        return "?"
    preset = config.get("preset")
    shape = preset if isinstance(preset, str) else f"{model.n_layers} layers x {model.emb_dim}"
    return f"{shape}, {_format_count(model.num_parameters())} params"


def _format_count(n: int) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while we walked
    return total
