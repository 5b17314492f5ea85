"""Training events: what a run reports, and the `metrics.jsonl` file that records them.

The training loop emits these; the run folder's `metrics.jsonl` stores one per
line, flushed as it happens; front ends (the CLI progress bar, the TUI) read
them back, possibly from another process, with `MetricsReader`, and add them
up with engine.runs.progress.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator

from engine.runs.atomic import write_error
from engine.runs.untrusted_files import open_regular_for_reading, open_regular_for_writing, parse_json


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; write them as null so every line stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **{k: _clean(v) for k, v in asdict(self).items()}}


# Step numbers: StepDone, EvalDone and SampleGenerated carry the 0-based index of
# the step just taken (the book's `global_step`); RunStarted, CheckpointSaved and
# RunEnded carry the number of steps done so far.


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run: str
    resumed: bool
    step: int  # optimizer steps already done (0 for a new run)
    total_steps: int  # steps this run will have done when it finishes
    n_params: int
    device: str
    world_size: int = 1
    tokens_seen: int = 0


@dataclass
class StepDone(Event):
    kind: ClassVar[str] = "step"
    step: int  # 0-based index of the optimizer step just taken, as the book counts
    epoch: int  # 0-based
    tokens_seen: int
    loss: float
    lr: float
    tokens_per_sec: float
    step_time: float  # seconds
    grad_norm: float | None = None
    mfu: float | None = None  # model FLOPs utilisation, 0..1 (engine.training.mfu); None where unknown


@dataclass
class EvalDone(Event):
    kind: ClassVar[str] = "eval"
    step: int
    epoch: int
    tokens_seen: int
    train_loss: float
    val_loss: float
    train_ppl: float
    val_ppl: float
    # Bits per byte of the same batches (None in files written before they were recorded).
    train_bpb: float | None = None
    val_bpb: float | None = None


@dataclass
class SampleGenerated(Event):
    kind: ClassVar[str] = "sample"
    step: int
    epoch: int
    tokens_seen: int
    prompt: str
    text: str  # the prompt followed by the generated continuation


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    val_loss: float | None
    best: bool


@dataclass
class RunEnded(Event):
    kind: ClassVar[str] = "run_ended"
    step: int
    state: str  # "finished", "stopped" or "failed"
    message: str = ""


@dataclass
class CorpusPreparing(Event):
    """How far the tokenizing of a run's corpus into the cache (engine.data.prepare) has come, before RunStarted.

    A new run's folder is made only once its data is ready (bad input fails before anything
    is written), so these are recorded beside the run folders (engine.runs.preparation).
    """

    kind: ClassVar[str] = "preparing"
    bytes_read: int  # of the source on disk
    bytes_total: int
    tokens: int
    documents: int
    seconds: float  # since the preparation (re)started


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (RunStarted, StepDone, EvalDone, SampleGenerated, CheckpointSaved, RunEnded,
                              CorpusPreparing)
}


# Training health (engine.insight.health): reported beside the steps, read by whoever watches.


@dataclass
class UpdateRatios(Event):
    kind: ClassVar[str] = "update_ratios"
    step: int
    ratios: dict[str, float]  # parameter tensor name -> |w_after - w_before| / |w_before| of this step


@dataclass
class LossSpike(Event):
    kind: ClassVar[str] = "loss_spike"
    step: int
    loss: float  # null in the file when non-finite
    recent_mean: float
    recent_std: float
    reason: str  # "spike" (far above the recent spread) or "non-finite"


EVENT_TYPES.update({cls.kind: cls for cls in (UpdateRatios, LossSpike)})


# What a field of each annotation may hold in a file. Floats may be null: non-finite values are written so.
_ACCEPTS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
}
_ACCEPTS["float | None"] = _ACCEPTS["float"]
_ACCEPTS["dict[str, float]"] = lambda v: isinstance(v, dict) and all(
    isinstance(k, str) and _ACCEPTS["float"](x) for k, x in v.items())


def event_from_dict(data: Any) -> Event | None:
    """Rebuild an event; None for a kind this version does not know (newer writers) or a malformed one.

    metrics.jsonl may have been edited or damaged: a line that is not an object, or
    whose fields have the wrong types, is no event, so it cannot break whoever reads it.
    """
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(data.get("event")) if isinstance(data.get("event"), str) else None
    if cls is None:
        return None
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        accepts = _ACCEPTS.get(f.type) if isinstance(f.type, str) else None
        if accepts is not None and not accepts(value):
            return None
        values[f.name] = value
    try:
        return cls(**values)
    except TypeError:  # a required field is missing
        return None


class MetricsWriter:
    """Appends events to `metrics.jsonl`, one line each, flushed at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd = open_regular_for_writing(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, event: Event) -> None:
        try:
            self._file.write(json.dumps(event.to_dict()) + "\n")
            self._file.flush()
        except OSError as exc:  # a full disk above all: name the file that could not be written
            raise write_error(self.path, exc) from exc

    def close(self) -> None:
        self._file.close()


class MetricsReader:
    """Follows a `metrics.jsonl` written by another process.

    Each call to `read_new()` returns the events appended since the last call;
    a line still being written (no newline yet) waits for the next call.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[Event]:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return []
        if size < self._offset:  # the file was replaced: start over
            self._offset = 0
        if size == self._offset:
            return []
        try:
            fd = open_regular_for_reading(self.path)
        except OSError:  # gone, or replaced by something that is not a file: nothing to read
            return []
        with os.fdopen(fd, "rb") as f:
            f.seek(self._offset)
            chunk = f.read(size - self._offset)
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        return list(_parse_lines(chunk[:end]))


def _parse_lines(data: bytes) -> Iterator[Event]:
    for line in data.splitlines():
        try:
            event = event_from_dict(parse_json(line))
        except ValueError:
            continue  # a torn or foreign line: skip it, keep following
        if event is not None:
            yield event
