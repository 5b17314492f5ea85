"""A run's corpus preparation as it goes, recorded where whoever follows the run can read it.

A new run's folder is made only once its tokens are ready, so that bad input
fails before anything is written; but tokenizing a large corpus on the first
`train` can take minutes. The trainer therefore keeps the latest
`CorpusPreparing` event of a named run in

    <data_dir>/runs/.preparing/<name>.json

(replaced atomically, at most every `min_interval` seconds) and removes it when
the preparation ends, however it ends. The leading dot keeps it out of the run
listing; the app reads it for the runs it started while they are starting.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable

from engine.runs.atomic import atomic_write_json
from engine.runs.events import CorpusPreparing, event_from_dict
from engine.runs.untrusted_files import read_json

FOLDER = ".preparing"
_MAX_BYTES = 64 << 10  # one event is a few hundred bytes


def preparation_path(runs_dir: Path, name: str) -> Path:
    """Where the preparation of run `name` (a valid run name) is recorded."""
    return Path(runs_dir) / FOLDER / f"{name}.json"


class PreparationRecord:
    """Keeps the latest preparation event of one run in its file, throttled; `close()` removes it."""

    def __init__(self, path: Path, min_interval: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.min_interval = min_interval
        self._clock = clock
        self._last = float("-inf")

    def write(self, event: CorpusPreparing) -> None:
        now = self._clock()
        if now - self._last < self.min_interval:
            return
        self._last = now
        # Progress is advisory: a file that cannot be written must not end the preparation
        # (if the disk is full, writing the shards fails with the error that matters).
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, event.to_dict())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the folder goes too once no run is preparing
            self.path.parent.rmdir()


def read_preparations(runs_dir: Path) -> dict[str, CorpusPreparing]:
    """The latest preparation event of every run being prepared now, by run name."""
    folder = Path(runs_dir) / FOLDER
    try:
        entries = list(os.scandir(folder))
    except OSError:  # nothing is being prepared (no folder), or it cannot be read
        return {}
    found = {}
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue  # an atomic write's temporary file
        try:
            event = event_from_dict(read_json(entry.path, _MAX_BYTES))
        except (OSError, ValueError):  # removed meanwhile, or not ours
            continue
        if isinstance(event, CorpusPreparing):
            found[entry.name.removesuffix(".json")] = event
    return found
