"""The run store: one folder per training run under <data_dir>/runs/.

    <data_dir>/runs/<name>/config.json    what the run trains: {"name", "created", "model", "train", "corpus"}
    <data_dir>/runs/<name>/metrics.jsonl  events, one per line (engine.runs.events)
    <data_dir>/runs/<name>/status.json    {"state", "pid", "step", "updated", "message"}
    <data_dir>/runs/<name>/train.log      human-readable log
    <data_dir>/runs/<name>/checkpoints/   see engine.runs.checkpoints
    <data_dir>/runs/<name>/.lock          held (flock) by the process training the run

The lock is an OS lock, so it disappears with its process even after `kill -9`;
a status that still says "running" while nobody holds the lock is a crashed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from engine.runs.atomic import WriteError, atomic_write_json
from engine.errors import RunError
from engine.runs.summary import MetricsSummaries, RunSummary, describe_model, folder_size

STATES = ("running", "finished", "stopped", "failed")
MAX_NAME_LENGTH = 100
# A trainer starting while a UI probes the lock would otherwise see it as taken.
_LOCK_RETRY_SECONDS = 0.5


def default_data_dir(explicit: str | Path | None = None) -> Path:
    """--data-dir if given, else $TUI_GPT_DATA_DIR, else the platform's user data folder."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = os.environ.get("TUI_GPT_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_data_dir("tui-gpt", appauthor=False))


def validate_run_name(name: Any) -> str:
    """Return `name` if it can name a run folder, else raise RunError saying why."""
    why = _name_problem(name)
    if why:
        raise RunError(f"invalid run name {name!r}: {why}")
    return name


def _name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return "it must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if "/" in name or "\\" in name:
        return "it must not contain / or \\"
    if name.startswith("."):
        return "it must not start with a dot"
    if not name.isprintable():
        return "it must contain only printable characters"
    if name != name.strip():
        return "it must not start or end with a space"
    return None


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunStore:
    """The runs under one data dir; folders are created only when something is written."""

    def __init__(self, data_dir: str | Path | None = None):
        self.data_dir = default_data_dir(data_dir)
        self.runs_dir = self.data_dir / "runs"
        self.cache_dir = self.data_dir / "cache"
        self._summaries = MetricsSummaries()

    def ensure_cache_dir(self) -> Path:
        self._make_dir(self.cache_dir)
        return self.cache_dir

    def _make_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot write to data dir {self.data_dir}: {exc.strerror or exc}") from exc

    def _run_dir(self, name: str) -> Path:
        path = self.runs_dir / validate_run_name(name)
        if path.resolve().parent != self.runs_dir.resolve():
            raise RunError(f"invalid run name {name!r}: it leads outside {self.runs_dir}")
        return path

    def exists(self, name: str) -> bool:
        """Whether a run folder called `name` exists (RunError if `name` is not a valid name)."""
        return self._run_dir(name).is_dir()

    def new_run_name(self, prefix: str) -> str:
        """A readable name not used yet, like "gpt-nano-20261123-1530" (then "-2", "-3", ...)."""
        clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip(".-") or "run"
        base = f"{clean[:MAX_NAME_LENGTH - 20]}-{datetime.now():%Y%m%d-%H%M}"
        name, n = base, 1
        while self.exists(name):
            n += 1
            name = f"{base}-{n}"
        return name

    def create(self, name: str, config: dict[str, Any]) -> Run:
        """Make the folder of a new run and write its config.json ("name" and "created" added if absent)."""
        path = self._run_dir(name)
        self._make_dir(self.runs_dir)
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"a run named {name} already exists in {self.runs_dir}") from None
        except OSError as exc:
            raise RunError(f"cannot write to data dir {self.data_dir}: {exc.strerror or exc}") from exc
        run = self._run(name, path)
        try:
            run.write_config({"name": name, "created": now_iso(), **config})
        except RunError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return run

    def open(self, name: str) -> Run:
        path = self._run_dir(name)
        if not path.is_dir():
            raise RunError(f"no run named {name} in {self.runs_dir}")
        return self._run(name, path)

    def list(self) -> list[RunSummary]:
        """Every run, most recently updated first."""
        try:
            entries = [e for e in os.scandir(self.runs_dir) if e.is_dir() and _name_problem(e.name) is None]
        except FileNotFoundError:
            return []
        summaries = [self._run(e.name, Path(e.path)).summary() for e in entries]
        return sorted(summaries, key=lambda s: s.updated, reverse=True)

    def delete(self, name: str) -> None:
        """Delete a run's folder; RunError if a process is using the run."""
        run = self.open(name)
        trash = self.runs_dir / f".deleting-{name}-{os.getpid()}"
        with run.lock():  # nobody can start training it while it goes
            try:
                os.rename(run.dir, trash)
            except OSError as exc:
                raise RunError(f"cannot delete run {name}: {exc.strerror or exc}") from exc
        shutil.rmtree(trash, ignore_errors=True)
        self._summaries.forget(run.metrics_path)

    def _run(self, name: str, path: Path) -> Run:
        return Run(name, path, self._summaries)


class Run:
    """One run's folder and the files in it."""

    def __init__(self, name: str, path: Path, summaries: MetricsSummaries | None = None):
        self.name = name
        self.dir = Path(path)
        self.config_path = self.dir / "config.json"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.status_path = self.dir / "status.json"
        self.log_path = self.dir / "train.log"
        self.checkpoints_dir = self.dir / "checkpoints"
        self.lock_path = self.dir / ".lock"
        self._summaries = summaries or MetricsSummaries()

    def __repr__(self) -> str:
        return f"Run({self.name!r}, {str(self.dir)!r})"

    def read_config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"run {self.name} has no config.json in {self.dir}") from None
        except (OSError, ValueError) as exc:
            raise RunError(f"cannot read {self.config_path}: {exc}") from exc
        if not isinstance(config, dict):
            raise RunError(f"cannot read {self.config_path}: it is not a JSON object")
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        self._write_json(self.config_path, config)

    def write_status(self, state: str, step: int | None = None, message: str = "") -> None:
        if state not in STATES:
            raise ValueError(f"run state must be one of {STATES}, got {state!r}")
        status = {"state": state, "pid": os.getpid(), "step": step, "updated": now_iso(), "message": message}
        self._write_json(self.status_path, status)

    def read_status(self) -> dict[str, Any]:
        """The last status written, or {} if there is none (a run never started)."""
        try:
            status = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def _write_json(self, path: Path, obj: Any) -> None:
        try:
            atomic_write_json(path, obj)
        except WriteError as exc:
            raise RunError(str(exc)) from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the duration; RunError if another process holds it.

        The .lock file stays when released: deleting it could let two processes lock different files.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunError(f"cannot lock run {self.name}: {exc.strerror or exc}") from exc
        try:
            deadline = time.monotonic() + _LOCK_RETRY_SECONDS
            while not _try_flock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise RunError(f"run {self.name} is in use by process {_read_pid(fd)}")
                time.sleep(0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the file releases the lock

    def is_in_use(self) -> int | None:
        """The pid of the process holding the lock (-1 if it has not written it yet), or None."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            # A shared probe: UIs polling at the same time do not see each other as holders.
            if _try_flock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return _read_pid(fd)
        finally:
            os.close(fd)

    def summary(self) -> RunSummary:
        status = self.read_status()
        try:
            config = self.read_config()
        except RunError:
            config = {}
        metrics = self._summaries.get(self.metrics_path)
        state = status.get("state", "new")
        if self.is_in_use() is not None:
            state = "running"
        elif state == "running":
            state = "failed"  # it says running, but its process is gone
        status_step = status.get("step") if isinstance(status.get("step"), int) else None
        # Never-started runs fall back to when they were created.
        updated = max(_mtime(self.status_path), _mtime(self.metrics_path)) or _mtime(self.config_path)
        return RunSummary(
            name=self.name,
            model=describe_model(config),
            steps=max((s for s in (status_step, metrics.steps) if s is not None), default=0),
            best_val_loss=metrics.best_val_loss,
            best_val_ppl=metrics.best_val_ppl,
            best_val_bpb=metrics.best_val_bpb,
            updated=datetime.fromtimestamp(updated).astimezone(),
            size_bytes=folder_size(self.dir),
            state=state,
            message=str(status.get("message", "")),
        )


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _read_pid(fd: int) -> int:
    # The holder writes its pid right after locking; give it a moment if we came in between.
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return -1


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
