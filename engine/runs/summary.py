"""What a list of runs shows about each run, cheap enough to refresh every couple of seconds.

The only costly part, the best validation loss in `metrics.jsonl`, is read
incrementally: each refresh parses only the lines appended since the last one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.model.config import GPTConfig
from engine.errors import ConfigError
from engine.runs.events import EvalDone, Event, MetricsReader, RunStarted, StepDone


@dataclass(frozen=True)
class RunSummary:
    name: str
    model: str  # e.g. "gpt-nano, 6.9M params"
    steps: int  # optimizer steps done
    best_val_loss: float | None
    best_val_ppl: float | None
    best_val_bpb: float | None  # bits per byte at the best val loss (None: not recorded)
    updated: datetime  # when its status or metrics last changed (local time, tz-aware)
    size_bytes: int
    state: str  # "new", "running", "finished", "stopped" or "failed"
    message: str = ""  # the status message: why it stopped or failed


@dataclass
class MetricsSummary:
    steps: int | None = None
    best_val_loss: float | None = None
    best_val_ppl: float | None = None
    best_val_bpb: float | None = None

    def add(self, event: Event) -> None:
        if isinstance(event, StepDone):
            self.steps = max(self.steps or 0, event.step + 1)  # StepDone.step is 0-based
        elif isinstance(event, RunStarted):
            self.steps = max(self.steps or 0, event.step)
        elif isinstance(event, EvalDone) and event.val_loss is not None:
            if self.best_val_loss is None or event.val_loss < self.best_val_loss:
                self.best_val_loss, self.best_val_ppl = event.val_loss, event.val_ppl
                self.best_val_bpb = event.val_bpb


@dataclass
class _Scan:
    reader: MetricsReader
    file_id: tuple[int, int]
    size: int = 0
    summary: MetricsSummary = field(default_factory=MetricsSummary)


class MetricsSummaries:
    """Per metrics.jsonl, what its events add up to so far; safe to use from several threads."""

    def __init__(self) -> None:
        self._scans: dict[Path, _Scan] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> MetricsSummary:
        with self._lock:
            try:
                stat = os.stat(path)
            except OSError:
                self._scans.pop(path, None)
                return MetricsSummary()
            file_id = (stat.st_dev, stat.st_ino)
            scan = self._scans.get(path)
            if scan is None or scan.file_id != file_id or stat.st_size < scan.size:  # new or rewritten
                scan = self._scans[path] = _Scan(MetricsReader(path), file_id)
            scan.size = stat.st_size
            for event in scan.reader.read_new():
                scan.summary.add(event)
            return MetricsSummary(**vars(scan.summary))

    def forget(self, path: Path) -> None:
        with self._lock:
            self._scans.pop(path, None)


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
