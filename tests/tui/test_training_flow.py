"""Training from the app: real `tui-gpt train` processes, followed through their run folders."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("engine.training.trainer")

from engine.runs.checkpoints import latest_checkpoint  # noqa: E402
from engine.runs.store import RunStore  # noqa: E402
from textual.widgets import Input  # noqa: E402
from tui_gpt.app.app import TuiGptApp  # noqa: E402
from tui_gpt.app.screens.quit_while_training import QuitWhileTrainingScreen  # noqa: E402
from tui_gpt.app.panes.stats.stats_pane import StatsPane  # noqa: E402
from tui_gpt.app.panes.train.train_pane import TrainPane  # noqa: E402

from .helpers import shown_text, wait_for, wait_until_ready  # noqa: E402

TINY_RUN = {"context_length": "32", "batch_size": "2", "eval_iter": "1", "sample_tokens": "4"}


@pytest.fixture
def corpus(tmp_path, verdict_text) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(verdict_text[:7000], encoding="utf-8")
    return path


@pytest.fixture
def no_runs_left_behind(data_dir):
    """Kill any training process a failing test leaves running."""
    yield
    for summary in RunStore(data_dir).list():
        pid = RunStore(data_dir).open(summary.name).is_in_use()
        if pid and pid > 0:
            os.kill(pid, signal.SIGKILL)


async def start_run(pilot, app: TuiGptApp, corpus: Path, **settings: str) -> str:
    await wait_until_ready(pilot, app)
    await pilot.press("f2")
    for name, value in {"corpus": str(corpus), **TINY_RUN, **settings}.items():
        app.query_one(f"#train-{name}", Input).value = value
    await pilot.press("ctrl+s")
    train = app.query_one(TrainPane)
    assert train.current_run is not None
    return train.current_run


def progress_of(app: TuiGptApp, name: str):
    return app.runs.progress.get(name)


async def test_a_short_run_trains_and_its_evaluations_reach_the_stats(data_dir, corpus, no_runs_left_behind):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        name = await start_run(pilot, app, corpus, max_steps="4", eval_freq="1")
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.state_of(name) == "finished", timeout=120, what="the run to finish")
        await pilot.pause(0.6)  # one more poll for the last events
        progress = progress_of(app, name)
        assert [e.step for e in progress.evals] == [0, 1, 2, 3]
        assert len(progress.samples) >= 4
        assert "finished" in shown_text(app.query_one("#run-progress"))
        assert "Samples (" in app.query_one("#sample-timeline").border_title
        assert any(f"Run {name} finished" in n.message for n in app._notifications)
        await pilot.press("f3")
        stats = app.query_one(StatsPane)
        assert stats.selected == [name]
        assert "val" in shown_text(app.query_one("#stats-latest"))


async def test_stop_saves_a_checkpoint_and_resume_continues(data_dir, corpus, no_runs_left_behind):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        name = await start_run(pilot, app, corpus, max_steps="100000", eval_freq="50")
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: progress_of(app, name) and progress_of(app, name).steps_done >= 2, timeout=120,
                       what="steps")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: train.state_of(name) == "stopped", timeout=60, what="the stop")
        stopped_at = latest_checkpoint(RunStore(data_dir).open(name).checkpoints_dir).step
        assert stopped_at >= 2
        # Resume from the runs pane.
        await pilot.press("f4")
        await wait_for(pilot, lambda: app.query_one("#runs-table").row_count == 1)
        await pilot.press("r")
        assert app.query_one("TabbedContent").active == "train"
        await wait_for(pilot, lambda: progress_of(app, name).started.resumed and
                       progress_of(app, name).steps_done > stopped_at, timeout=120, what="resumed steps")
        assert progress_of(app, name).started.step == stopped_at
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: train.state_of(name) == "stopped", timeout=60, what="the second stop")


async def test_quitting_can_leave_a_run_training_and_reopening_follows_it(data_dir, corpus, no_runs_left_behind):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        name = await start_run(pilot, app, corpus, max_steps="100000", eval_freq="50")
        await wait_for(pilot, lambda: app.query_one(TrainPane).state_of(name) == "running", timeout=120)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitWhileTrainingScreen)
        await pilot.press("l")
    run = RunStore(data_dir).open(name)
    pid = run.is_in_use()
    assert pid, "the run went on after the app quit"

    again = TuiGptApp(data_dir)
    async with again.run_test(size=(100, 30)) as pilot:
        await wait_until_ready(pilot, again)
        train = again.query_one(TrainPane)
        await wait_for(pilot, lambda: train.current_run == name, what="the app to follow the run")
        steps = progress_of(again, name).steps_done
        await wait_for(pilot, lambda: progress_of(again, name).steps_done > steps, timeout=60, what="new steps")
        await pilot.press("f2", "ctrl+q")
        await pilot.press("s")  # stop it, and quit
    deadline = time.monotonic() + 60
    while run.is_in_use():
        assert time.monotonic() < deadline, "the run did not stop"
        time.sleep(0.1)
    assert run.read_status()["state"] == "stopped"


async def test_a_corpus_the_trainer_rejects_is_reported(data_dir, tmp_path, no_runs_left_behind):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        name = await start_run(pilot, app, empty, max_steps="4")
        train = app.query_one(TrainPane)
        await wait_for(pilot, lambda: train.state_of(name) == "did not start", timeout=60)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "empty" in errors[-1].message.lower()
        assert "did not start" in shown_text(app.query_one("#run-progress"))


async def test_a_missing_corpus_is_caught_before_starting(data_dir, tmp_path):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("f2")
        app.query_one("#train-corpus", Input).value = str(tmp_path / "nope.txt")
        await pilot.press("ctrl+s")
        assert app.query_one(TrainPane).current_run is None
        assert any("does not exist" in n.message for n in app._notifications)
