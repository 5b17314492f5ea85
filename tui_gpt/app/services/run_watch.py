"""Following training runs through their folders: new metrics events, and what they add up to.

`MetricsFollower` runs in a worker thread and only reads: for each run it
returns the events appended to `metrics.jsonl` since its last call.
`RunHistory` lives on the UI thread and accumulates those events into what
the panes show (progress, evaluation points, samples). Events are told apart
by their `kind`, so this module needs no engine import of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

# Smoothing of the step time used for the ETA: recent steps count most.
_STEP_TIME_WEIGHT = 0.1


class RunHistory:
    """What a run's events say so far; fed on the UI thread."""

    def __init__(self, name: str):
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self.started: Any = None  # the latest RunStarted
        self.last_step: Any = None  # the latest StepDone
        self.evals: list[Any] = []  # every EvalDone, in order
        self.samples: list[Any] = []  # every SampleGenerated, in order
        self.last_checkpoint: Any = None
        self.ended: Any = None  # the RunEnded of the latest session, if it ended
        self._step_time: float | None = None

    def apply(self, events: Iterable[Any]) -> None:
        for event in events:
            kind = event.kind
            if kind == "run_started":
                self._start(event)
            elif kind == "step":
                self.last_step = event
                self._step_time = (
                    event.step_time
                    if self._step_time is None
                    else (1 - _STEP_TIME_WEIGHT) * self._step_time + _STEP_TIME_WEIGHT * event.step_time
                )
            elif kind == "eval":
                self.evals.append(event)
            elif kind == "sample":
                self.samples.append(event)
            elif kind == "checkpoint":
                self.last_checkpoint = event
            elif kind == "run_ended":
                self.ended = event

    def _start(self, event: Any) -> None:
        if not event.resumed:
            self._reset()  # a new run under this name: forget the old one
        else:
            # Resuming from a checkpoint older than the last events (after a crash)
            # replays those steps: drop what they reported the first time.
            self.evals = [e for e in self.evals if e.step < event.step]
            self.samples = [s for s in self.samples if s.step < event.step]
        self.started = event
        self.ended = None
        self._step_time = None

    @property
    def steps_done(self) -> int:
        if self.last_step is not None:
            return self.last_step.step + 1
        return self.started.step if self.started is not None else 0

    @property
    def total_steps(self) -> int | None:
        return self.started.total_steps if self.started is not None else None

    @property
    def latest_eval(self) -> Any:
        return self.evals[-1] if self.evals else None

    def eta_seconds(self) -> float | None:
        """Time left at the recent pace, while the run is going."""
        if self.ended is not None or self._step_time is None or self.total_steps is None:
            return None
        return max(0, self.total_steps - self.steps_done) * self._step_time


class MetricsFollower:
    """Reads only the new part of each run's `metrics.jsonl`; used from one worker thread."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._readers: dict[str, Any] = {}

    def read_new(self, names: Iterable[str]) -> dict[str, list[Any]]:
        from engine.runs.events import MetricsReader

        new: dict[str, list[Any]] = {}
        names = set(names)
        for gone in set(self._readers) - names:
            del self._readers[gone]
        for name in names:
            reader = self._readers.get(name)
            if reader is None:
                reader = self._readers[name] = MetricsReader(self.runs_dir / name / "metrics.jsonl")
            events = reader.read_new()
            if events:
                new[name] = events
        return new
