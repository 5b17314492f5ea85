"""The runs and stats panes on run folders made without training: list, plot, overlay, prompt, delete."""

from __future__ import annotations

from pathlib import Path

import engine.runs.events
from engine.runs.events import EvalDone, LossSpike, MetricsWriter, StepDone, UpdateRatios
from engine.runs.store import RunStore
from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.services.model_catalog import ModelChoice
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.panes.prompt.prompt_pane import PromptPane
from tui_gpt.app.panes.stats.health_block import layer_ratios
from tui_gpt.app.panes.stats.stats_pane import StatsPane

from .helpers import make_run, shown_text, wait_for, wait_until_ready


async def open_runs_pane(pilot, app: TuiGptApp, count: int) -> None:
    await wait_until_ready(pilot, app)
    await pilot.press("f4")
    await wait_for(pilot, lambda: app.query_one("#runs-table").row_count == count, what="the runs")
    await pilot.pause()


async def test_runs_pane_lists_every_run_with_state_loss_and_steps(data_dir):
    make_run(data_dir, "alpha", evals=3, state="finished")
    make_run(data_dir, "beta", evals=2, state="stopped", with_checkpoint=False)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs_pane(pilot, app, 2)
        table = app.query_one("#runs-table")
        rows = {table.get_row_at(i)[0]: table.get_row_at(i) for i in range(table.row_count)}
        assert rows["alpha"][1:4] == ["finished", "30", "7.800"]
        assert rows["beta"][1:4] == ["stopped", "20", "9.000"]
        assert app.focused is table


async def test_stats_of_a_run_open_from_the_runs_pane_and_runs_overlay(data_dir):
    make_run(data_dir, "alpha", evals=3)
    make_run(data_dir, "beta", evals=2, seed=1)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs_pane(pilot, app, 2)
        table = app.query_one("#runs-table")
        while table.get_row_at(table.cursor_row)[0] != "beta":
            await pilot.press("down")
        await pilot.press("s")
        stats = app.query_one(StatsPane)
        assert app.query_one("TabbedContent").active == "stats"
        assert "beta" in stats.selected
        latest = shown_text(app.query_one("#stats-latest"))
        assert "beta" in latest and "8.900" in latest  # beta's last val loss
        loss_plot = shown_text(app.query_one("#plot-loss"))
        assert "Loss" in loss_plot and "step" in loss_plot
        # Overlay: tick alpha too, with the keyboard.
        runs = app.query_one("#stats-runs")
        runs.highlighted = stats._names.index("alpha")
        await pilot.press("space")
        await pilot.pause()
        assert set(stats.selected) == {"alpha", "beta"}
        latest = shown_text(app.query_one("#stats-latest"))
        assert "alpha" in latest and "7.800" in latest
        assert "alpha train" in shown_text(app.query_one("#plot-loss"))
        await pilot.press("x")
        assert stats.axis == "tokens" and "tokens seen" in shown_text(app.query_one("#plot-loss"))
        await pilot.press("p")
        await pilot.pause()
        assert stats.metric == "ppl" and app.query_one("#plot-loss").display is False
        assert "Perplexity" in shown_text(app.query_one("#plot-ppl"))


async def test_a_run_loads_for_prompting_and_generates(data_dir):
    make_run(data_dir, "alpha")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs_pane(pilot, app, 1)
        await pilot.press("l")
        prompt = app.query_one(PromptPane)
        await wait_for(pilot, lambda: prompt.loaded.choice == ModelChoice("run", "alpha", "best"))
        assert app.query_one("TabbedContent").active == "prompt"
        assert "run alpha at step 30" in prompt.loaded.description
        app.query_one("#prompt-input").text = "Hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: prompt.transcript.views and not prompt.generating)
        assert prompt.transcript.views[-1].exchange.model.startswith("run alpha")


async def test_deleting_a_run_asks_first(data_dir):
    make_run(data_dir, "alpha")
    make_run(data_dir, "beta")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs_pane(pilot, app, 2)
        table = app.query_one("#runs-table")
        doomed = table.get_row_at(table.cursor_row)[0]
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert (data_dir / "runs" / doomed).is_dir()
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: table.row_count == 1, what="the run to go")
        assert not (data_dir / "runs" / doomed).exists()
        assert [s.name for s in RunStore(data_dir).list()] == [n for n in ("alpha", "beta") if n != doomed]


async def test_a_run_in_use_cannot_be_deleted(data_dir):
    make_run(data_dir, "busy")
    run = RunStore(data_dir).open("busy")
    app = TuiGptApp(data_dir)
    with run.lock():  # as a training process holds it
        async with app.run_test(size=(100, 30)) as pilot:
            await open_runs_pane(pilot, app, 1)
            table = app.query_one("#runs-table")
            assert table.get_row_at(0)[1] == "running"
            await pilot.press("d")
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.press("ctrl+q")  # a run is training: the app asks before quitting
            assert app.screen.__class__.__name__ == "QuitWhileTrainingScreen"
            await pilot.press("escape")
            assert app.is_running
    assert run.dir.is_dir()


async def test_the_app_reads_what_a_metrics_file_gained_once_and_every_pane_sees_it(data_dir, monkeypatch):
    make_run(data_dir, "alpha", evals=2)
    opened: list[Path] = []

    real_open = engine.runs.events.open_regular_for_reading

    def counting_open(file):
        opened.append(Path(file))
        return real_open(file)

    monkeypatch.setattr(engine.runs.events, "open_regular_for_reading", counting_open)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until_ready(pilot, app)
        await wait_for(pilot, lambda: "alpha" in app.runs.progress, what="the run")
        await pilot.pause(0.6)  # a poll or two more, with nothing new
        assert len(opened) == 1  # the runs list, the train, stats and runs panes: one read
        writer = MetricsWriter(RunStore(data_dir).open("alpha").metrics_path)
        writer.write(EvalDone(step=29, epoch=0, tokens_seen=1920, train_loss=6.5, val_loss=7.25, train_ppl=665.1,
                              val_ppl=1408.1))
        writer.close()
        await wait_for(pilot, lambda: len(app.runs.progress["alpha"].evals) == 3, what="the new evaluation")
        await pilot.press("f3")
        await wait_for(pilot, lambda: "7.250" in shown_text(app.query_one("#stats-latest")), what="the stats")
        assert len(opened) == 2 and {path.parent.name for path in opened} == {"alpha"}


def spike_notices(app: TuiGptApp) -> list[str]:
    return [n.message for n in app._notifications if "loss spike" in n.message]


async def test_stats_shows_the_health_of_new_steps_and_notifies_a_loss_spike_once(data_dir):
    make_run(data_dir, "alpha", evals=2)
    metrics = RunStore(data_dir).open("alpha").metrics_path
    writer = MetricsWriter(metrics)
    writer.write(LossSpike(step=5, loss=12.0, recent_mean=9.0, recent_std=0.1, reason="spike"))  # old news
    writer.close()
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("f3")
        health = app.query_one("#stats-health-numbers")
        await wait_for(pilot, lambda: "grad norm" in shown_text(health), what="the health numbers")
        assert app.query_one("#stats-health").border_title == "Health · alpha · 1 loss spike"
        writer = MetricsWriter(metrics)
        writer.write(StepDone(step=20, epoch=0, tokens_seen=1344, loss=6.0, lr=4e-4, tokens_per_sec=1234.0,
                              step_time=0.21, grad_norm=1.23, mfu=0.12))
        writer.write(UpdateRatios(step=20, ratios={"tok_emb.weight": 1e-3, "trf_blocks.1.ff.layers.0.weight": 4.5e-3,
                                                   "out_head.weight": 1.2e-3}))
        writer.write(LossSpike(step=21, loss=9.5, recent_mean=6.0, recent_std=0.2, reason="spike"))
        writer.close()
        await wait_for(pilot, lambda: "1.23" in shown_text(health), what="the new step")
        lines = shown_text(health).splitlines()
        assert lines[0].strip() == "grad norm 1.23 · lr 4.0e-04 · 1,234 tok/s · 0.21 s/step · MFU 12%"
        assert lines[1].strip() == "update/weight median 1.2e-03 · max 4.5e-03 (trf_blocks.1.ff.layers.0.weight)"
        await wait_for(pilot, lambda: spike_notices(app), what="the notification")
        await pilot.pause(0.6)  # a poll or two more
        assert spike_notices(app) == ["alpha: loss spike at step 22: 9.500 (recent mean 6.000)"]
        assert app.query_one("#stats-health").border_title == "Health · alpha · 2 loss spikes"


def test_per_layer_ratios_keep_the_largest_of_each_block_in_model_order():
    ratios = {"tok_emb.weight": 1e-3, "trf_blocks.0.att.W_query.weight": 2e-3, "trf_blocks.0.ff.layers.0.bias": None,
              "trf_blocks.0.norm1.scale": 5e-3, "trf_blocks.1.att.out_proj.weight": 3e-3, "out_head.weight": 4e-3}
    assert layer_ratios(ratios) == {"tok_emb": 1e-3, "trf_blocks.0": 5e-3, "trf_blocks.1": 3e-3, "out_head": 4e-3}


async def test_e_exports_the_selected_run_as_a_hugging_face_folder(data_dir):
    make_run(data_dir, "alpha")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_runs_pane(pilot, app, 1)
        await pilot.press("e")
        out = data_dir / "exports" / "alpha-step-30"
        await wait_for(pilot, lambda: any(str(out) in n.message for n in app._notifications), what="the export")
        assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
        assert "alpha" in (out / "README.md").read_text()
        await pilot.press("e")  # again: the same checkpoint is not written twice
        await wait_for(pilot, lambda: any(n.message.startswith("Already exported") for n in app._notifications))
