"""Side-by-side timing: contenders alternate within one process, medians after warm-up.

On a shared, noisy machine a slow spell hits whichever contender happens to
run then; alternating them round by round (and rotating who goes first)
spreads that noise over all of them instead of one.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping


@dataclass(frozen=True)
class Samples:
    """Wall-clock seconds of each timed run of one contender."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the runs were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median > 0 else 0.0


def time_alternating(contenders: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
                     sync: Callable[[], None] | None = None) -> dict[str, Samples]:
    """Run every contender `warmup` times untimed, then `repeats` timed rounds.

    `sync` waits for queued device work (CUDA) so that a run's time includes it.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    names = list(contenders)
    wait = sync or (lambda: None)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
            wait()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            wait()
            start = time.perf_counter()
            contenders[name]()
            wait()
            seconds[name].append(time.perf_counter() - start)
    return {name: Samples(tuple(values)) for name, values in seconds.items()}
