"""The run store: names, folders, atomic writes, the process lock, run summaries and run progress."""

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

import engine.runs.events
from engine.errors import RunError, TuiGptError
from engine.model.gpt import GPTModel
from engine.runs.atomic import DiskFullError, atomic_write_json
from engine.runs.events import (
    EvalDone,
    LossSpike,
    MetricsWriter,
    RunEnded,
    RunStarted,
    SampleGenerated,
    StepDone,
    UpdateRatios,
)
from engine.runs.lock_holder import LockHolder, process_start_time
from engine.runs.progress import MetricsFollower, RunProgress
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


# -- run progress: what the events add up to -------------------------------------------------------


def started(step: int = 0, total: int = 10, resumed: bool = False, time: float = 100.0) -> RunStarted:
    return RunStarted(run="a", resumed=resumed, step=step, total_steps=total, n_params=1, device="cpu", time=time)


def step(n: int, time: float = 100.0) -> StepDone:
    return StepDone(step=n, epoch=0, tokens_seen=(n + 1) * 64, loss=5.0, lr=1e-3, tokens_per_sec=640.0, step_time=0.1,
                    time=time)


def evaluation(n: int, val_loss: float | None = 5.5) -> EvalDone:
    return EvalDone(step=n, epoch=0, tokens_seen=(n + 1) * 64, train_loss=5.0, val_loss=val_loss, train_ppl=148.4,
                    val_ppl=None if val_loss is None else val_loss * 10)


def test_progress_counts_steps_evaluations_samples_and_keeps_the_best_loss():
    progress = RunProgress()
    progress.extend([started(), step(0), step(1), evaluation(1, 6.0), evaluation(3, 5.0), evaluation(5, None),
                     evaluation(7, float("nan")), evaluation(8, 5.5),
                     SampleGenerated(step=1, epoch=0, tokens_seen=128, prompt="P", text="P x")])
    assert (progress.steps_done, progress.total_steps, progress.tokens_seen, progress.epoch) == (2, 10, 128, 0)
    assert progress.latest_eval.step == 8 and len(progress.samples) == 1
    assert (progress.best_val_loss, progress.best_val_ppl) == (5.0, 50.0)  # a non-finite loss is never the best


def test_eta_is_this_sessions_wall_clock_pace_times_the_steps_left():
    progress = RunProgress()
    progress.extend([started(time=100.0)])
    assert progress.eta_seconds() is None  # no step yet: no pace
    progress.extend([step(0, time=102.0), step(1, time=104.0)])
    assert progress.eta_seconds() == pytest.approx(8 * 2.0)
    progress.add(RunEnded(step=2, state="stopped"))
    assert progress.eta_seconds() is None
    progress.extend([started(step=2, resumed=True, time=500.0), step(2, time=503.0)])  # the pace of this session
    assert progress.eta_seconds() == pytest.approx(7 * 3.0)


def test_resuming_from_an_older_checkpoint_drops_the_replayed_points():
    progress = RunProgress()
    progress.extend([started(), step(5), evaluation(1, 6.0), evaluation(3, 5.0), evaluation(5, 4.0)])
    progress.add(started(step=4, resumed=True))
    assert [e.step for e in progress.evals] == [1, 3] and progress.best_val_loss == 5.0
    assert progress.steps_done == 4  # step 5 is taken again
    progress.add(started(total=5))
    assert progress.evals == [] and progress.best_eval is None and progress.total_steps == 5  # a new run, same name


def spike(n: int) -> LossSpike:
    return LossSpike(step=n, loss=9.0, recent_mean=5.0, recent_std=0.1, reason="spike")


def test_progress_keeps_the_latest_update_ratios_and_every_loss_spike_across_sessions():
    progress = RunProgress()
    progress.extend([started(), step(0), UpdateRatios(step=0, ratios={"a": 1e-3}), spike(2), step(4),
                     UpdateRatios(step=4, ratios={"a": 2e-3}), spike(5)])
    assert progress.update_ratios.ratios == {"a": 2e-3} and [s.step for s in progress.spikes] == [2, 5]
    snapshot = progress.copy()
    progress.add(spike(6))
    assert len(snapshot.spikes) == 2  # a copy is not changed by later events
    progress.add(started(step=4, resumed=True))  # steps 4 onwards are taken again
    assert [s.step for s in progress.spikes] == [2] and progress.update_ratios is None
    progress.add(started())
    assert progress.spikes == [] and progress.update_ratios is None  # a new run, same name


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """The metrics files opened for reading from now on."""
    paths = []

    real_open = engine.runs.events.open_regular_for_reading

    def counting_open(file):
        paths.append(Path(file))
        return real_open(file)

    monkeypatch.setattr(engine.runs.events, "open_regular_for_reading", counting_open)
    return paths


def test_follower_reads_each_file_only_where_it_grew_and_hands_out_copies(tmp_path, opened):
    path = tmp_path / "metrics.jsonl"
    follower = MetricsFollower()
    assert follower.progress(path).steps_done == 0  # no file yet
    writer = MetricsWriter(path)
    writer.write(started())
    writer.write(step(0))
    first = follower.progress(path)
    assert first.steps_done == 1 and len(opened) == 1
    assert follower.progress(path) is first and len(opened) == 1  # nothing new: not even opened
    writer.write(step(1))
    writer.close()
    second = follower.progress(path)
    assert (second.steps_done, first.steps_done) == (2, 1) and len(opened) == 2
    path.write_text("")  # the file started over: so does its progress
    assert follower.progress(path).started is None


def test_listing_the_runs_reads_each_metrics_file_once(store, opened):
    for name in ("a", "b"):
        writer = MetricsWriter(store.create(name, {}).metrics_path)
        writer.write(started())
        writer.close()
    assert {s.name: s.progress.total_steps for s in store.list()} == {"a": 10, "b": 10}
    assert sorted(path.parent.name for path in opened) == ["a", "b"]
    store.list()
    assert len(opened) == 2  # nothing new since
