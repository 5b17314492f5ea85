"""A headless training process under real signals: clean stops, a second Ctrl-C, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs.checkpoints import latest_checkpoint
from engine.runs.events import MetricsReader, StepDone
from engine.runs.exit_codes import EXIT_ABORTED, EXIT_STOPPED
from engine.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus(tmp_path, verdict_text) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(verdict_text, encoding="utf-8")
    return path


def start_training(data_dir: Path, corpus: Path, run: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", run,
               "--corpus", str(corpus), "--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2",
               "--max-steps", "100000", "--eval-freq", "1000", "--sample-tokens", "0", "--device", "cpu", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(data_dir: Path, run: str, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    metrics = data_dir / "runs" / run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if metrics.exists() and sum(isinstance(e, StepDone) for e in MetricsReader(metrics).read_new()) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {count} steps within {timeout} s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_stopped(tmp_path, corpus, signum):
    data_dir = tmp_path / "data"
    process = start_training(data_dir, corpus, "sig")
    wait_for_steps(data_dir, "sig", 3, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_STOPPED, err
    assert "Traceback" not in out + err
    run = RunStore(data_dir).open("sig")
    status = run.read_status()
    assert status["state"] == "stopped"
    assert latest_checkpoint(run.checkpoints_dir).step == status["step"] >= 3


def test_second_ctrl_c_leaves_at_once(tmp_path, corpus):
    data_dir = tmp_path / "data"
    # A bigger model makes the checkpoint saved on stopping take long enough to interrupt it.
    process = start_training(data_dir, corpus, "twice", "--preset", "gpt-micro")
    wait_for_steps(data_dir, "twice", 2, process)
    process.send_signal(signal.SIGINT)
    first_line = ""
    while "stopping after this step" not in first_line:  # the first Ctrl-C was handled
        first_line = process.stderr.readline()
        assert first_line, "the process ended before announcing the stop"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_ABORTED, err
    assert "Traceback" not in out + err


def test_kill_9_keeps_the_last_checkpoint_and_the_run_resumes(tmp_path, corpus):
    data_dir = tmp_path / "data"
    process = start_training(data_dir, corpus, "killed", "--checkpoint-every", "2")
    wait_for_steps(data_dir, "killed", 7, process)
    process.kill()
    process.communicate(timeout=60)
    run = RunStore(data_dir).open("killed")
    saved = latest_checkpoint(run.checkpoints_dir)
    assert saved is not None and saved.step >= 2
    assert run.is_in_use() is None  # the lock died with the process
    assert run.summary().state == "failed"  # it said "running" and nobody holds the lock
    resumed = subprocess.run(
        [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", "killed", "--resume",
         "--max-steps", str(saved.step + 2)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert run.read_status() == {**run.read_status(), "state": "finished", "step": saved.step + 2}


def test_a_second_trainer_on_the_same_run_is_refused(tmp_path, corpus):
    data_dir = tmp_path / "data"
    process = start_training(data_dir, corpus, "busy")
    try:
        wait_for_steps(data_dir, "busy", 1, process)
        second = subprocess.run(
            [sys.executable, "-m", "tui_gpt", "train", "--data-dir", str(data_dir), "--run-name", "busy", "--resume"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr.strip() == f"tui-gpt: error: run busy is in use by process {process.pid}"
    finally:
        process.terminate()
        process.communicate(timeout=120)
