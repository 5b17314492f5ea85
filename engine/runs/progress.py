"""What a run's events add up to: steps, epoch, tokens, losses, samples, health, speed and time left.

`RunProgress` is the one fold of a run's events. The `tui-gpt train` progress
line feeds it the events as the trainer emits them; `RunStore.list()`, hence
`tui-gpt runs` and every pane of the app, feeds it what `metrics.jsonl` gained
since the last look, through a `MetricsFollower`. So the same events show the
same numbers everywhere, the ETA above all.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from engine.runs.events import (
    CheckpointSaved,
    CorpusPreparing,
    EvalDone,
    Event,
    LossSpike,
    MetricsReader,
    RunEnded,
    RunStarted,
    SampleGenerated,
    StepDone,
    UpdateRatios,
)


@dataclass
class RunProgress:
    """A run as its events tell it so far; `add` each event in the order it was written."""

    started: RunStarted | None = None  # the start of the latest session
    last_step: StepDone | None = None
    evals: list[EvalDone] = field(default_factory=list)  # in order
    samples: list[SampleGenerated] = field(default_factory=list)  # in order
    last_checkpoint: CheckpointSaved | None = None
    ended: RunEnded | None = None  # how the latest session ended, once it has
    best_eval: EvalDone | None = None  # the evaluation with the lowest validation loss
    # Training health (engine.insight.health): the latest update-to-weight ratios, and every loss spike.
    update_ratios: UpdateRatios | None = None
    spikes: list[LossSpike] = field(default_factory=list)  # in order
    preparing: CorpusPreparing | None = None  # while the corpus is being prepared, until the session starts

    def add(self, event: Event) -> None:
        match event:
            case RunStarted():
                self._start(event)
            case StepDone():
                self.last_step = event
            case EvalDone():
                self.evals.append(event)
                if _is_better(event, self.best_eval):
                    self.best_eval = event
            case SampleGenerated():
                self.samples.append(event)
            case CheckpointSaved():
                self.last_checkpoint = event
            case RunEnded():
                self.ended = event
            case UpdateRatios():
                self.update_ratios = event
            case LossSpike():
                self.spikes.append(event)
            case CorpusPreparing():
                self.preparing = event

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.add(event)

    def _start(self, event: RunStarted) -> None:
        if not event.resumed:
            # A new run under this name: forget the old one.
            self.evals, self.samples, self.last_step, self.last_checkpoint = [], [], None, None
            self.spikes, self.update_ratios = [], None
        else:
            # Resuming from a checkpoint older than the last events (after a crash)
            # replays those steps: drop what they reported the first time.
            self.evals = [e for e in self.evals if e.step < event.step]
            self.samples = [s for s in self.samples if s.step < event.step]
            self.spikes = [s for s in self.spikes if s.step < event.step]
            if self.last_step is not None and self.last_step.step >= event.step:
                self.last_step = None
            if self.update_ratios is not None and self.update_ratios.step >= event.step:
                self.update_ratios = None
        self.best_eval = None
        for evaluation in self.evals:
            if _is_better(evaluation, self.best_eval):
                self.best_eval = evaluation
        self.started = event
        self.ended = None
        self.preparing = None

    def copy(self) -> RunProgress:
        """A copy that later events leave alone (the events themselves are shared)."""
        return replace(self, evals=list(self.evals), samples=list(self.samples), spikes=list(self.spikes))

    # -- what the events say ------------------------------------------------------------------

    @property
    def steps_done(self) -> int:
        # StepDone carries the 0-based index of the step just taken, RunStarted the steps done.
        if self.last_step is not None:
            return self.last_step.step + 1
        return self.started.step if self.started is not None else 0

    @property
    def total_steps(self) -> int | None:
        return self.started.total_steps if self.started is not None else None

    @property
    def epoch(self) -> int | None:
        """The 0-based epoch of the latest step."""
        return self.last_step.epoch if self.last_step is not None else None

    @property
    def tokens_seen(self) -> int:
        if self.last_step is not None:
            return self.last_step.tokens_seen
        return self.started.tokens_seen if self.started is not None else 0

    @property
    def latest_eval(self) -> EvalDone | None:
        return self.evals[-1] if self.evals else None

    @property
    def best_val_loss(self) -> float | None:
        return self.best_eval.val_loss if self.best_eval is not None else None

    @property
    def best_val_ppl(self) -> float | None:
        return self.best_eval.val_ppl if self.best_eval is not None else None

    @property
    def best_val_bpb(self) -> float | None:
        """Bits per byte at the best val loss (None in runs recorded before it was)."""
        return self.best_eval.val_bpb if self.best_eval is not None else None

    def eta_seconds(self) -> float | None:
        """Time left at this session's pace, while it is going; None before its first step.

        The pace is wall-clock time per step from the session's start to its latest
        step, as the events' timestamps say: evaluations, samples and checkpoints
        count too, and every reader of the same events gets the same answer.
        """
        started, step = self.started, self.last_step
        if started is None or step is None or self.ended is not None:
            return None
        done_here = self.steps_done - started.step
        if done_here <= 0:
            return None
        per_step = max(0.0, step.time - started.time) / done_here
        return per_step * max(0, started.total_steps - self.steps_done)


def _is_better(evaluation: EvalDone, best: EvalDone | None) -> bool:
    loss = evaluation.val_loss  # None (or NaN in-process) when the loss was not finite
    if loss is None or not math.isfinite(loss):
        return False
    return best is None or loss < best.val_loss


@dataclass
class _Followed:
    reader: MetricsReader
    file_id: tuple[int, int] | None  # None while the file does not exist
    size: int = 0
    progress: RunProgress = field(default_factory=RunProgress)
    snapshot: RunProgress = field(default_factory=RunProgress)


class MetricsFollower:
    """Follows `metrics.jsonl` files, reading each only where it grew; safe to share between threads."""

    def __init__(self) -> None:
        self._followed: dict[Path, _Followed] = {}
        self._lock = threading.Lock()

    def progress(self, path: Path) -> RunProgress:
        """What the file's events add up to now.

        A copy the caller may keep and read from any thread; the very same object
        as last time while nothing was added, so callers can tell what changed.
        """
        path = Path(path)
        with self._lock:
            try:
                stat = os.stat(path)
                file_id, size = (stat.st_dev, stat.st_ino), stat.st_size
            except OSError:
                file_id, size = None, 0
            followed = self._followed.get(path)
            if followed is None or followed.file_id != file_id or size < followed.size:  # new or rewritten
                followed = self._followed[path] = _Followed(MetricsReader(path), file_id)
            followed.size = size
            events = followed.reader.read_new()
            if events:
                followed.progress.extend(events)
                followed.snapshot = followed.progress.copy()
            return followed.snapshot

    def forget(self, path: Path) -> None:
        with self._lock:
            self._followed.pop(Path(path), None)

    def keep_only(self, paths: Iterable[Path]) -> None:
        """Stop following every file but these (runs deleted meanwhile, by anyone)."""
        keep = {Path(path) for path in paths}
        with self._lock:
            for path in set(self._followed) - keep:
                del self._followed[path]
