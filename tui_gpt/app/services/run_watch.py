"""Following training runs through their folders: the latest progress of each run, and what changed.

The app's poll worker calls `RunStore.list()`, which reads each run's
`metrics.jsonl` only where it grew and adds the new events up
(engine.runs.progress); every summary carries that `RunProgress`, a copy no
later poll changes. `RunWatch` keeps the latest of them on the UI thread, for
the panes to read, and tells which runs have new events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.runs.progress import RunProgress
    from engine.runs.summary import RunSummary


class RunWatch:
    def __init__(self) -> None:
        self.progress: dict[str, RunProgress] = {}  # by run name; the panes share this dict

    def update(self, summaries: list[RunSummary]) -> set[str]:
        """Take what a poll found; the names of the runs with new events since the last one."""
        latest = {summary.name: summary.progress for summary in summaries}
        # The store hands out the very same progress object while a run has no new events.
        changed = {name for name, progress in latest.items() if self.progress.get(name) is not progress}
        self.progress.clear()
        self.progress.update(latest)
        return changed

    def forget(self, name: str) -> None:
        self.progress.pop(name, None)
