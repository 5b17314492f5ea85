"""Snapshots of the main screens at 80x24 and at 120x40 (update with --snapshot-update).

Everything shown is made deterministic: run folders with fixed contents and
times, a transcript written beforehand, the CPU as the device, UTC.
"""

from __future__ import annotations

import time

import pytest

from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.services.transcripts import Exchange, TokenRecord, TranscriptStore

from .helpers import make_run, wait_for, wait_until_ready

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def scene(data_dir, monkeypatch):
    """A data dir with two runs and a transcript, seen from a CPU machine in UTC."""
    import torch

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("engine.training.device.resolve_device", lambda name="auto": torch.device("cpu"))
    make_run(data_dir, "nano-verdict", evals=4, state="finished")
    make_run(data_dir, "nano-lr-high", evals=3, state="stopped", seed=3)
    alternatives = {" the": 0.31, " a": 0.12, " to": 0.08, " and": 0.05, " of": 0.04}
    words = [(" the", 0.31), (" way", 0.02), (" of", 0.22), (" the", 0.4), (" world", 0.01), (".", 0.09)]
    tokens = [TokenRecord(i, text, prob, tuple((100 + j, alt, p) for j, (alt, p) in enumerate(alternatives.items())))
              for i, (text, prob) in enumerate(words)]
    TranscriptStore(data_dir / "transcripts").append(
        ("fresh", "gpt-nano"),
        Exchange("Every effort moves you", "untrained gpt-nano (13M parameters, random weights)",
                 {"max_new_tokens": 6, "temperature": 0.0, "top_k": None, "top_p": None, "seed": None}, tokens),
    )
    yield data_dir
    monkeypatch.delenv("TZ")
    time.tzset()


def ready_on(pane: str, *keys: str):
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_until_ready(pilot, app)
        runs = app.runs.progress
        await wait_for(pilot, lambda: len(runs) == 2 and all(p.evals for p in runs.values()),
                       what="the runs")
        for editor in app.query("Input, PromptInput"):
            editor.cursor_blink = False  # a blinking cursor would be caught on or off
        app.query_one("#train-pane").follow("nano-verdict")
        await pilot.press(pane, *keys)
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("pane", ["f1", "f2", "f3", "f4"], ids=["prompt", "train", "stats", "runs"])
def test_main_screens(snap_compare, scene, pane, size):
    assert snap_compare(TuiGptApp(scene), terminal_size=size, run_before=ready_on(pane))


def test_token_inspector_with_probability_colours(snap_compare, scene):
    assert snap_compare(TuiGptApp(scene), terminal_size=(120, 40), run_before=ready_on("f1", "ctrl+t", "c", "left"))


def test_model_picker(snap_compare, scene):
    assert snap_compare(TuiGptApp(scene), terminal_size=(80, 24), run_before=ready_on("f1", "ctrl+o"))
