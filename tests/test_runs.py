"""The run store: names, folders, atomic writes, the process lock and run summaries."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import pytest

from engine.runs.atomic import DiskFullError, atomic_write_json
from engine.errors import RunError, TuiGptError
from engine.runs.events import EvalDone, MetricsWriter, RunStarted, StepDone
from engine.model.gpt import GPTModel
from engine.runs.lock_holder import LockHolder, process_start_time
from engine.runs.store import RunStore, default_data_dir, validate_run_name

REPO = Path(__file__).resolve().parents[1]

# Holds the lock of run argv[2] in data dir argv[1] until killed, saying "running" like a trainer.
HOLDER = """
import sys, time
from engine.runs.store import RunStore
run = RunStore(sys.argv[1]).open(sys.argv[2])
with run.lock():
    run.write_status("running", step=7, message="training")
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def store(data_dir) -> RunStore:
    return RunStore()


def model_config(tiny_config) -> dict:
    return {"model": tiny_config.to_dict(), "train": {"lr": 0.0004}, "corpus": {"path": None, "name": "demo"}}


def test_data_dir_comes_from_option_then_env_then_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_GPT_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir(tmp_path / "opt") == tmp_path / "opt"
    assert default_data_dir() == tmp_path / "env"
    assert RunStore().runs_dir == tmp_path / "env" / "runs"
    monkeypatch.delenv("TUI_GPT_DATA_DIR")
    assert default_data_dir() == Path(platformdirs.user_data_dir("tui-gpt", appauthor=False))


@pytest.mark.parametrize("name", ["gpt-nano-20261123-1530", "my run", "verdict_v2.1", "é-ü", "x" * 100])
def test_valid_run_names_pass(name):
    assert validate_run_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "a\\b", "../escape", "tab\there", "new\nline", "x" * 101, " padded", None]
)
def test_invalid_run_names_are_refused(name):
    with pytest.raises(RunError, match="invalid run name"):
        validate_run_name(name)


def test_store_creates_folders_only_when_writing(store, data_dir, tiny_config):
    assert store.list() == []
    assert not data_dir.exists()
    run = store.create("first", model_config(tiny_config))
    assert run.dir == data_dir / "runs" / "first"
    config = run.read_config()
    assert config["name"] == "first" and config["model"] == tiny_config.to_dict()
    assert "T" in config["created"]  # an ISO timestamp
    assert store.exists("first") and not store.exists("second")
    assert store.ensure_cache_dir() == data_dir / "cache" and (data_dir / "cache").is_dir()


def test_create_keeps_a_given_created_time_and_refuses_duplicates(store):
    run = store.create("run", {"created": "2026-01-01T00:00:00+00:00"})
    assert run.read_config()["created"] == "2026-01-01T00:00:00+00:00"
    with pytest.raises(RunError, match="already exists"):
        store.create("run", {})


def test_open_missing_run_names_the_folder(store):
    with pytest.raises(RunError, match=r"no run named ghost in .*runs"):
        store.open("ghost")


def test_new_run_names_are_unique(store):
    first = store.new_run_name("gpt-nano")
    assert first.startswith("gpt-nano-")
    store.create(first, {})
    second = store.new_run_name("gpt-nano")
    assert second == f"{first}-2"
    assert validate_run_name(store.new_run_name("weird/prefix:..")).startswith("weird-prefix")


def test_unwritable_data_dir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RunError, match="cannot write to data dir") as info:
        RunStore(blocker / "data").create("run", {})
    assert "\n" not in str(info.value)


def test_a_symlinked_run_folder_cannot_lead_outside_the_store(store, tmp_path):
    store.runs_dir.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (store.runs_dir / "sneaky").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunError, match="outside"):
        store.open("sneaky")


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "status.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["status.json"]


def test_full_disk_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    atomic_write_json(path, {"version": "old"})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match="disk full while writing .*config.json") as info:
        atomic_write_json(path, {"version": "new"})
    assert isinstance(info.value, TuiGptError)
    assert json.loads(path.read_text()) == {"version": "old"}
    assert os.listdir(tmp_path) == ["config.json"]


def test_full_disk_when_writing_a_run_file_is_a_run_error(store, monkeypatch):
    run = store.create("run", {})

    def over_quota(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", over_quota)
    with pytest.raises(RunError, match="disk full"):
        run.write_status("running", step=1)
    assert run.read_status() == {}


def test_status_round_trip_and_crash_detection(store):
    run = store.create("run", {})
    assert run.summary().state == "new"
    run.write_status("finished", step=12, message="done")
    status = run.read_status()
    assert status["state"] == "finished" and status["step"] == 12 and status["pid"] == os.getpid()
    assert status["message"] == "done" and "T" in status["updated"]
    assert run.summary().state == "finished"
    run.write_status("running", step=13)  # ...but nobody holds the lock: the trainer died
    summary = run.summary()
    assert summary.state == "failed" and summary.steps == 13
    with pytest.raises(ValueError):
        run.write_status("exploded")


def test_lock_within_one_process(store):
    run = store.create("run", {})
    assert run.is_in_use() is None
    with run.lock():
        assert run.is_in_use() == os.getpid()
        assert run.summary().state == "running"
        with pytest.raises(RunError, match=f"run run is in use by process {os.getpid()}"):
            with run.lock():
                pass
    assert run.is_in_use() is None


def test_lock_held_by_another_process_dies_with_it(store):
    run = store.create("run", {})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.data_dir), "run"], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run.is_in_use() == holder.pid
        summary = run.summary()
        assert summary.state == "running" and summary.steps == 7 and summary.message == "training"
        with pytest.raises(RunError, match=f"in use by process {holder.pid}"):
            with run.lock():
                pass
        with pytest.raises(RunError, match=f"in use by process {holder.pid}"):
            store.delete("run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert run.is_in_use() is None
    assert run.summary().state == "failed"  # status still says running: the process died
    with run.lock():
        assert run.is_in_use() == os.getpid()
    store.delete("run")
    assert not store.exists("run") and store.list() == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start times come from Linux /proc")
def test_the_lock_names_its_holder_by_pid_start_time_and_command_line(store):
    run = store.create("run", {})
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", HOLDER, str(store.data_dir), "run"]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        named = run.lock_holder()
        assert named == LockHolder(holder.pid, process_start_time(holder.pid), tuple(command))
        assert process_start_time(holder.pid) != process_start_time(os.getpid())
        # A process holding the lock that is not a `tui-gpt train` is not one to signal.
        assert named.why_not_a_live_trainer() == f"the lock does not identify process {holder.pid} as a tui-gpt trainer"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()


@pytest.mark.parametrize("command, is_trainer", [
    (("python", "-m", "tui_gpt", "train", "--run", "x"), True),
    (("python", "-u", "-m", "tui_gpt", "train", "--run-name", "x"), True),  # a torchrun worker
    (("/venv/bin/tui-gpt", "--data-dir", "d", "train"), True),
    (("/venv/bin/tui-gpt", "--data-dir=d", "train"), True),
    (("/venv/bin/tui-gpt", "--data-dir", "train"), False),  # the app, on a data dir named "train"
    (("/venv/bin/tui-gpt", "runs", "train"), False),
    (("python", "train.py"), False),
    ((), False),
])
def test_a_trainer_is_told_by_its_command_line(command, is_trainer):
    assert LockHolder(1234, 1, command).is_trainer is is_trainer


def test_summary_reads_metrics_incrementally(store, tiny_config):
    run = store.create("run", {**model_config(tiny_config), "preset": "gpt-nano"})
    writer = MetricsWriter(run.metrics_path)
    writer.write(RunStarted(run="run", resumed=False, step=0, total_steps=100, n_params=1, device="cpu"))
    writer.write(StepDone(step=9, epoch=0, tokens_seen=10, loss=5.0, lr=1e-3, tokens_per_sec=1.0, step_time=0.1))
    writer.write(EvalDone(step=9, epoch=0, tokens_seen=10, train_loss=5.0, val_loss=6.0, train_ppl=148.0, val_ppl=403.0))
    first = run.summary()
    assert (first.steps, first.best_val_loss, first.best_val_ppl) == (10, 6.0, 403.0)
    assert first.model.startswith("gpt-nano, ") and first.model.endswith("M params")
    assert first.size_bytes == sum(p.stat().st_size for p in run.dir.rglob("*") if p.is_file())
    writer.write(EvalDone(step=19, epoch=0, tokens_seen=20, train_loss=4.0, val_loss=5.5, train_ppl=55.0, val_ppl=245.0))
    writer.write(EvalDone(step=29, epoch=0, tokens_seen=30, train_loss=3.0, val_loss=5.8, train_ppl=20.0, val_ppl=330.0))
    writer.write(StepDone(step=29, epoch=0, tokens_seen=30, loss=3.0, lr=1e-3, tokens_per_sec=1.0, step_time=0.1))
    writer.close()
    later = store.open("run").summary()  # a fresh Run object shares the store's cache
    assert (later.steps, later.best_val_loss, later.best_val_ppl) == (30, 5.5, 245.0)
    run.metrics_path.write_text("")  # a metrics file started over forgets the old best
    assert store.open("run").summary().best_val_loss is None


def test_summary_without_metrics_or_model(store):
    summary = store.create("bare", {}).summary()
    assert (summary.model, summary.steps, summary.best_val_loss, summary.state) == ("?", 0, None, "new")


def test_list_is_newest_first(store, tiny_config):
    for age, name in enumerate(["newest", "middle", "oldest"]):
        run = store.create(name, model_config(tiny_config))
        run.write_status("finished", step=1)
        stamp = time.time() - 1000 * age
        os.utime(run.status_path, (stamp, stamp))
    (store.runs_dir / ".deleting-old-1").mkdir()  # hidden leftovers are not runs
    summaries = store.list()
    assert [s.name for s in summaries] == ["newest", "middle", "oldest"]
    n_params = GPTModel(tiny_config).num_parameters()
    assert summaries[0].model == f"2 layers x 32, {n_params / 1e6:.1f}M params"
