"""The run store: one folder per training run under <data_dir>/runs/.

    <data_dir>/runs/<name>/config.json    what the run trains: {"name", "created", "id", "model", "train", "corpus"}
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
import json
import fcntl
import os
import re
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import platformdirs

from engine.errors import RunError
from engine.runs.atomic import WriteError, atomic_write_json
from engine.runs.untrusted_files import is_link, open_regular_for_reading, open_regular_for_writing, read_json
from engine.runs.progress import MetricsFollower
from engine.runs.summary import RunSummary, describe_model, folder_size

STATES = ("running", "finished", "stopped", "failed")
MAX_NAME_LENGTH = 100
# File names hold 255 bytes; the rest is left for the prefixes and suffixes tui-gpt adds to a run's name.
MAX_NAME_BYTES = 200
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
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"it takes more than {MAX_NAME_BYTES} bytes as a file name (UTF-8)"
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
        self._follower = MetricsFollower()  # one reader per metrics.jsonl, shared by every Run object

    def _make_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot write to data dir {self.data_dir}: {exc.strerror or exc}") from exc

    def _run_dir(self, name: str) -> Path:
        path = self.runs_dir / validate_run_name(name)
        if is_link(path) or path.resolve().parent != self.runs_dir.resolve():
            # A linked run folder could make tui-gpt write, size or delete outside the data dir.
            raise RunError(f"run {name} is a link that may lead outside {self.runs_dir}; tui-gpt uses only real run folders")
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
        """Make the folder of a new run and write its config.json ("name", "created" and "id" added if absent)."""
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
            run.write_config({"name": name, "created": now_iso(), "id": uuid.uuid4().hex, **config})
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
        """Every run, most recently updated first; each metrics.jsonl is read only where it grew."""
        try:
            entries = [e for e in os.scandir(self.runs_dir)
                       if e.is_dir(follow_symlinks=False) and _name_problem(e.name) is None]
        except FileNotFoundError:
            entries = []
        runs = [self._run(e.name, Path(e.path)) for e in entries]
        self._follower.keep_only(run.metrics_path for run in runs)
        summaries = [run.summary() for run in runs]
        return sorted(summaries, key=lambda s: s.updated, reverse=True)

    def delete(self, name: str) -> None:
        """Delete a run's folder; RunError if a process is using the run."""
        run = self.open(name)
        trash = self.runs_dir / f".deleting-{os.getpid()}-{time.monotonic_ns()}"
        with run.lock():  # nobody can start training it while it goes
            try:
                os.rename(run.dir, trash)
            except OSError as exc:
                raise RunError(f"cannot delete run {name}: {exc.strerror or exc}") from exc
        shutil.rmtree(trash, ignore_errors=True)
        self._follower.forget(run.metrics_path)

    def _run(self, name: str, path: Path) -> Run:
        return Run(name, path, self._follower)


class Run:
    """One run's folder and the files in it."""

    def __init__(self, name: str, path: Path, follower: MetricsFollower | None = None):
        self.name = name
        self.dir = Path(path)
        self.config_path = self.dir / "config.json"
        self.metrics_path = self.dir / "metrics.jsonl"
        self.status_path = self.dir / "status.json"
        self.log_path = self.dir / "train.log"
        self.checkpoints_dir = self.dir / "checkpoints"
        self.lock_path = self.dir / ".lock"
        self._follower = follower or MetricsFollower()

    def __repr__(self) -> str:
        return f"Run({self.name!r}, {str(self.dir)!r})"

    def read_config(self) -> dict[str, Any]:
        try:
            config = read_json(self.config_path)
        except FileNotFoundError:
            raise RunError(f"run {self.name} has no config.json in {self.dir}") from None
        except (OSError, ValueError) as exc:
            raise RunError(f"cannot read {self.config_path}: {exc}") from exc
        if not isinstance(config, dict):
            raise RunError(f"cannot read {self.config_path}: it is not a JSON object")
        return config

    def creation_id(self) -> str:
        """What tells this run from an earlier, deleted run of the same name: its "id" (else when it was created)."""
        config = self.read_config()
        return str(config.get("id") or config.get("created") or "")

    def write_config(self, config: dict[str, Any]) -> None:
        self._write_json(self.config_path, config)

    def write_status(self, state: str, step: int | None = None, message: str = "") -> None:
        if state not in STATES:
            raise ValueError(f"run state must be one of {STATES}, got {state!r}")
        status = {"state": state, "pid": os.getpid(), "step": step, "updated": now_iso(), "message": message}
        try:
            self._write_json(self.status_path, status)
        except RunError:
            if state == "running" or not self._overwrite_status_in_place(status):
                raise

    def _overwrite_status_in_place(self, status: dict[str, Any]) -> bool:
        """The last word of a run on a full disk: rewrite the existing status.json in its own blocks.

        Not atomic (a crash now could leave it torn, and a torn status reads as absent), but
        a run that failed for want of space must not be left saying "running".
        """
        data = (json.dumps(status, indent=2) + "\n").encode("utf-8")
        try:
            fd = open_regular_for_writing(self.status_path, os.O_WRONLY)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_size < len(data):
                data = json.dumps(status, separators=(",", ":")).encode("utf-8")
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def read_status(self) -> dict[str, Any]:
        """The last status written, or {} if there is none (a run never started)."""
        try:
            status = read_json(self.status_path)
        except (OSError, ValueError):
            return {}
        if not isinstance(status, dict):
            return {}
        # Hand-edited or damaged values read as absent, so one bad file cannot break a listing.
        expected = {"state": str, "pid": int, "step": int, "updated": str, "message": str}
        return {key: value for key, value in status.items()
                if key not in expected or (isinstance(value, expected[key]) and not isinstance(value, bool))}

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
            fd = open_regular_for_writing(self.lock_path, os.O_RDWR | os.O_CREAT)
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
            fd = open_regular_for_reading(self.lock_path)
        except FileNotFoundError:
            return None
        except OSError:  # a link or something that is not a file: no trainer of ours holds that
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
        progress = self._follower.progress(self.metrics_path)
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
            steps=max(status_step or 0, progress.steps_done),
            best_val_loss=progress.best_val_loss,
            best_val_ppl=progress.best_val_ppl,
            updated=datetime.fromtimestamp(updated).astimezone(),
            size_bytes=folder_size(self.dir),
            state=state,
            message=str(status.get("message", "")),
            progress=progress,
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
