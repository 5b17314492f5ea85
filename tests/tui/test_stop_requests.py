"""Stopping a run signals only the tui-gpt trainer that holds its lock, never a process a lock merely names."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs.lock_holder import LockHolder, process_start_time
from engine.runs.store import RunStore
from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.panes.train.train_pane import TrainPane
from tui_gpt.app.services.training_process import CannotStop, request_stop

from .helpers import make_run, wait_for

REPO = Path(__file__).resolve().parents[2]
EXIT_STOPPED = 3

# A process is told apart from a later one with its pid by its start time in /proc.
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@contextlib.contextmanager
def forged_lock(run, text: str):
    """Hold the run's lock as a trainer would, with a lock file that says `text`."""
    fd = os.open(run.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def decoy():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def decoy_locks(pid: int) -> dict[str, str]:
    start = process_start_time(pid)
    trainer = [sys.executable, "-m", "tui_gpt", "train", "--run-name", "r"]
    return {
        "a bare pid": str(pid),
        "its own start time and command line": json.dumps({"pid": pid, "start_time": start,
                                                           "command": ["sleep", "60"]}),
        "a trainer's command line": json.dumps({"pid": pid, "start_time": start, "command": trainer}),
        "another start time": json.dumps({"pid": pid, "start_time": start + 1, "command": trainer}),
    }


@pytest.mark.parametrize("lock", ["a bare pid", "its own start time and command line", "a trainer's command line",
                                  "another start time"])
def test_a_lock_naming_another_live_process_does_not_get_it_signalled(data_dir, decoy, lock):
    run = RunStore(data_dir).create("r", {})
    with forged_lock(run, decoy_locks(decoy.pid)[lock]):
        holder = run.lock_holder()
        assert holder.pid == decoy.pid
        with pytest.raises(CannotStop, match=f"process {decoy.pid}"):
            request_stop(holder)
    with pytest.raises(subprocess.TimeoutExpired):
        decoy.wait(timeout=0.5)  # still sleeping: it got no SIGTERM


def test_the_trainer_holding_the_lock_is_stopped(data_dir, verdict_text, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(verdict_text, encoding="utf-8")
    command = [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", "r",
               "--corpus", str(corpus), "--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2",
               "--max-steps", "100000", "--eval-freq", "1000", "--sample-tokens", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    trainer = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(data_dir)
    deadline = time.monotonic() + 120
    try:
        while not (store.exists("r") and store.open("r").read_status().get("state") == "running"):
            assert trainer.poll() is None, trainer.communicate()
            assert time.monotonic() < deadline, "the trainer did not start"
            time.sleep(0.05)
        run = store.open("r")
        holder = run.lock_holder()
        assert holder == LockHolder(trainer.pid, process_start_time(trainer.pid), tuple(command))
        assert request_stop(holder)
        _, err = trainer.communicate(timeout=120)
        assert trainer.returncode == EXIT_STOPPED, err
        assert run.read_status()["state"] == "stopped"
        assert not request_stop(holder)  # gone
    finally:
        trainer.kill()
        trainer.wait()


async def test_the_train_pane_says_it_cannot_stop_a_run_whose_lock_names_another_process(data_dir, decoy):
    make_run(data_dir, "busy", state="running")
    run = RunStore(data_dir).open("busy")
    app = TuiGptApp(data_dir)
    with forged_lock(run, decoy_locks(decoy.pid)["a trainer's command line"]):
        async with app.run_test(size=(100, 30)) as pilot:
            train = app.query_one(TrainPane)
            await wait_for(pilot, lambda: train.current_run == "busy", what="the app to follow the run")
            await pilot.press("f2")
            await wait_for(pilot, lambda: app.focused is not None and train in app.focused.ancestors_with_self,
                           what="the train pane to have the focus")
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: any("Cannot stop" in n.message for n in app._notifications))
            [message] = [n.message for n in app._notifications if "Cannot stop" in n.message]
            assert message == f"Cannot stop run busy: process {decoy.pid} is not the tui-gpt trainer that locked the run"
    with pytest.raises(subprocess.TimeoutExpired):
        decoy.wait(timeout=0.5)
