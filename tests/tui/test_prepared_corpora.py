"""The Train pane and real data sets: prepared data sets offered as corpora, and a corpus being prepared."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("engine.training.trainer")

from textual.suggester import SuggestFromList  # noqa: E402
from textual.widgets import Input, Select  # noqa: E402

from engine.data.prepare import list_prepared  # noqa: E402
from engine.data.training_data import load_training_data  # noqa: E402
from engine.runs.events import MetricsWriter, RunStarted, StepDone  # noqa: E402
from engine.runs.preparation import PreparationRecord, preparation_path  # noqa: E402
from engine.runs.store import RunStore  # noqa: E402
from engine.runs.events import CorpusPreparing  # noqa: E402
from engine.training.settings import TrainConfig  # noqa: E402
from tui_gpt.app.app import TuiGptApp  # noqa: E402
from tui_gpt.app.panes.train.train_pane import TrainPane  # noqa: E402

from .helpers import shown_text, wait_for, wait_until_ready  # noqa: E402

TINY_RUN = {"context_length": "32", "batch_size": "2", "eval_iter": "1", "sample_tokens": "4", "max_steps": "2",
            "eval_freq": "100"}


def _prepared_jsonl(tmp_path: Path, data_dir: Path) -> Path:
    """A JSON Lines corpus, prepared into the data dir's cache as `tui-gpt data prepare` does."""
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"Record {i} tells of " + " ".join(
        f"word{(i * 7 + j) % 97}" for j in range(60))}) for i in range(200)), encoding="utf-8")
    defaults = TrainConfig()
    load_training_data(str(path), RunStore(data_dir).cache_dir, train_ratio=defaults.train_ratio, seed=defaults.seed)
    return path


async def test_the_corpus_field_offers_a_prepared_data_set_and_a_run_starts_on_it(data_dir, tmp_path):
    corpus = _prepared_jsonl(tmp_path, data_dir)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("f2")
        await wait_for(pilot, lambda: app.query("#train-prepared"), what="the prepared data sets")
        choice = app.query_one("#train-prepared", Select)
        field = app.query_one("#train-corpus", Input)
        assert isinstance(field.suggester, SuggestFromList)
        choice.focus()
        await pilot.press("enter", "down", "enter")  # open the choice, pick the first data set
        await pilot.pause()
        assert choice.query_one("SelectCurrent").label == f"records.jsonl · {_token_count(data_dir)}"
        assert field.value == str(corpus)  # the source the data set was prepared from
        for name, value in TINY_RUN.items():
            app.query_one(f"#train-{name}", Input).value = value
        await pilot.press("ctrl+s")
        train = app.query_one(TrainPane)
        name = train.current_run
        assert name is not None
        await wait_for(pilot, lambda: train.state_of(name) == "finished", timeout=120, what="the run to finish")
    run = RunStore(data_dir).open(name)
    assert run.read_config()["corpus"]["path"] == str(corpus)
    assert len(list_prepared(RunStore(data_dir).cache_dir)) == 1  # the run used the prepared data set as it was


def _token_count(data_dir: Path) -> str:
    meta = list_prepared(RunStore(data_dir).cache_dir)[0].meta
    return f"{meta['train_tokens'] + meta['val_tokens']:,} tokens"


async def test_the_train_pane_shows_the_corpus_being_prepared_then_the_steps(data_dir, monkeypatch):
    # The run's process only waits: what the pane shows comes from the files written below, as a trainer writes them.
    waiting = [sys.executable, "-c", "import time; time.sleep(120)"]
    monkeypatch.setattr("tui_gpt.app.panes.train.train_pane.train_command", lambda data_dir, request: waiting)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("f2")
        app.query_one("#train-run", Input).value = "big"
        await pilot.press("ctrl+s")
        train = app.query_one(TrainPane)
        panel = app.query_one("#run-progress")
        try:
            store = RunStore(data_dir)
            record = PreparationRecord(preparation_path(store.runs_dir, "big"))
            record.write(CorpusPreparing(bytes_read=120 * 2**20, bytes_total=800 * 2**20, tokens=3_100_000,
                                         documents=12_000, seconds=4.8))
            await wait_for(pilot, lambda: "preparing the corpus" in shown_text(panel), what="the preparation")
            shown = shown_text(panel)
            assert "15%" in shown and "120/800 MB" in shown and "3,100,000 tokens" in shown and "ETA 27s" in shown

            record.close()  # prepared: the trainer makes the run folder and starts
            run = store.create("big", {"model": {}, "train": {}, "corpus": {"path": None, "name": "demo"}})
            writer = MetricsWriter(run.metrics_path)
            writer.write(RunStarted(run="big", resumed=False, step=0, total_steps=10, n_params=1000, device="cpu"))
            writer.write(StepDone(step=0, epoch=0, tokens_seen=64, loss=9.5, lr=1e-3, tokens_per_sec=100.0,
                                  step_time=0.6))
            writer.close()
            await wait_for(pilot, lambda: "step 1/10" in shown_text(panel), what="the steps")
            assert "preparing" not in shown_text(panel)
        finally:
            os.kill(train._processes["big"].pid, signal.SIGKILL)
