"""The app around the panes: pane keys, the command palette, the keymap, a failing engine."""

from __future__ import annotations

import gc
import json

import pytest
from textual.widgets import TabbedContent

from tui_gpt.app import bindings
from tui_gpt.app.app import TuiGptApp

from .helpers import make_run, shown_text, wait_for, wait_until_ready


@pytest.mark.parametrize("keys", [("f1", "f2", "f3", "f4"), ("alt+p", "alt+t", "alt+s", "alt+r")])
async def test_every_pane_has_a_key_and_takes_the_focus(data_dir, keys):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        expected_focus = {"prompt": "prompt-input", "train": "train-corpus", "stats": "stats-runs",
                          "runs": "runs-table"}
        for key, pane in zip(reversed(keys), reversed(list(expected_focus))):
            await pilot.press(key)
            await pilot.pause()
            assert app.query_one(TabbedContent).active == pane
            assert app.focused.id == expected_focus[pane]


async def test_command_palette_lists_every_command_with_its_key(data_dir):
    make_run(data_dir, "alpha")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        await wait_for(pilot, lambda: app.query_one("#runs-table").row_count == 1)
        commands = {command.title: command.help for command in app.get_system_commands(app.screen)}
        for pane, pane_bindings in (("Prompt", bindings.PROMPT_INPUT + bindings.PROMPT_PANE),
                                    ("Train", bindings.TRAIN_PANE), ("Stats", bindings.STATS_PANE),
                                    ("Runs", bindings.RUNS_PANE)):
            for binding in pane_bindings:
                if binding.show and binding.action not in ("stop", "resume"):  # those need a running run
                    assert f"{pane}: {binding.description}" in commands
        assert commands["Train: Start"].endswith("(^s)")
        assert {"Prompt", "Train", "Stats", "Runs", "Quit"} <= set(commands)


async def test_a_command_from_the_palette_runs_in_its_pane(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*"Stepstokens")
        await wait_for(pilot, lambda: app.screen.query_one("CommandList").option_count == 1, what="one match")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one("#stats-pane").axis == "tokens", what="the command")
        assert app.query_one(TabbedContent).active == "stats"


async def test_keys_can_be_remapped_in_the_data_dir(data_dir):
    data_dir.mkdir(parents=True)
    (data_dir / "keymap.json").write_text(json.dumps({"pane.stats": "f9"}), encoding="utf-8")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("f9")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "stats"


async def test_an_engine_that_fails_to_load_is_reported_not_a_crash(data_dir, monkeypatch):
    def broken(explicit):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr("tui_gpt.app.app.load_engine", broken)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app._notifications, what="a notification")
        assert "No module named 'torch'" in list(app._notifications)[0].message
        assert "engine failed" in shown_text(app.query_one("#status-engine"))
        app.query_one("#prompt-input").text = "still here"
        await pilot.press("enter")
        assert app.query_one("#prompt-input").text == "still here"


async def test_objects_alive_once_the_engine_is_loaded_are_frozen_out_of_full_collections(data_dir):
    gc.unfreeze()  # whatever an earlier app in this process froze
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        assert gc.get_freeze_count() > 100_000  # torch, the engine and the app's widgets
