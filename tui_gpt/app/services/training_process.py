"""Training runs as separate processes: the `tui-gpt train` command, started and stopped.

The app never trains in its own process. It starts the same command a person
would type, detached into its own session so that the run outlives the app
(and a crash of either side leaves the other alone), then follows the run
through its folder. Stopping is a SIGTERM: the trainer finishes its step,
saves a checkpoint and exits with code 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import tui_gpt

@dataclass(frozen=True)
class TrainingRequest:
    """A new run as the training form describes it."""

    run: str
    recipe: str | None = None  # the settings start from this recipe when set
    # Only the settings the person gave, by name (engine.training.settings.SETTINGS);
    # the others are left to the recipe's or the trainer's defaults.
    settings: Mapping[str, Any] = field(default_factory=dict)


def _base_command(data_dir: Path, run: str) -> list[str]:
    return [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", run]


def train_command(data_dir: Path, request: TrainingRequest) -> list[str]:
    from engine.training.settings import SETTINGS  # called once the engine is loaded

    command = _base_command(data_dir, request.run)
    if request.recipe is not None:
        command += ["--recipe", request.recipe]
    for declared in SETTINGS:
        if declared.name in request.settings:
            command += declared.as_args(request.settings[declared.name])
    return command


def resume_command(data_dir: Path, run: str) -> list[str]:
    return _base_command(data_dir, run) + ["--resume"]


class TrainingProcess:
    """A `tui-gpt train` process this app started."""

    def __init__(self, run: str, process: subprocess.Popen, stderr_path: Path):
        self.run = run
        self.process = process
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """The exit code once the process has ended (and is reaped), else None."""
        return self.process.poll()

    def error_line(self) -> str:
        """The last line the trainer wrote to stderr: its one-line reason for exit code 1 or 2."""
        try:
            lines = self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            if line.strip():
                return line.strip().removeprefix("tui-gpt: error: ")
        return ""


def launch(data_dir: Path, run: str, command: list[str]) -> TrainingProcess:
    """Start `command` detached from this app; OSError if it cannot be started."""
    logs = Path(data_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stderr_path = logs / f"{run}.stderr.txt"
    env = dict(os.environ)
    # The child must import this very copy of tui_gpt, installed or not.
    package_root = str(Path(tui_gpt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,  # no SIGINT/SIGHUP from the app's terminal; survives the app
        )
    return TrainingProcess(run, process, stderr_path)


def request_stop(pid: int) -> bool:
    """Ask a training process to stop after its current step; False if it is already gone."""
    if pid <= 0 or pid == os.getpid():  # never this app itself, whatever a lock file says
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
