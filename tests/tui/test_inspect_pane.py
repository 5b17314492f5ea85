"""The Inspect pane, driven by keys on a tiny model: score, token odds, logit lens, attention, compare, errors."""

from __future__ import annotations

import pytest
from textual.widgets import OptionList, TabbedContent

from engine.model.config import GPTConfig
from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.panes.inspect.inspect_pane import InspectPane
from tui_gpt.app.panes.inspect.scored_text import BUCKET_STYLES, rank_bucket
from tui_gpt.app.screens.model_picker import ModelPicker
from tui_gpt.app.screens.open_file import OpenFileScreen

from .helpers import TINY, make_run, shown_text, wait_for, wait_until_ready

TEXT = "I had always thought Jack Gisburn rather a cheap genius, though a good fellow enough."


async def open_inspect(pilot, key: str = "f5") -> InspectPane:
    app = pilot.app
    await wait_until_ready(pilot, app)
    await pilot.press(key)
    await pilot.pause()
    assert app.query_one(TabbedContent).active == "inspect"
    return app.query_one(InspectPane)


async def score(pilot, pane: InspectPane, text: str = TEXT) -> None:
    pane.text_input.focus()
    pane.text_input.load_text(text)
    await pilot.press("ctrl+s")
    # Scoring ends by moving the focus to the tokens: wait for that too, not only for the score.
    await wait_for(pilot, lambda: pane.score is not None and not pane.busy and pilot.app.focused is pane.tokens_view,
                   what="the score")


def side_text(pilot) -> str:
    return shown_text(pilot.app.query_one("#inspect-detail"))


@pytest.mark.parametrize("key", ["f5", "alt+i"])
async def test_the_inspect_pane_has_a_key_and_focuses_the_text(data_dir, key):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_inspect(pilot, key)
        assert app.focused.id == "inspect-input"


async def test_scoring_colours_tokens_by_rank_and_shows_the_selected_tokens_odds(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await score(pilot, pane)
        view = pane.tokens_view
        assert app.focused is view and view.cursor == 1
        assert len(view.texts) == len(pane.score.ids) and "".join(view.texts) == TEXT
        assert view._style(0) == "dim"  # the first token is not scored
        assert view._style(3) == BUCKET_STYLES[rank_bucket(pane.score.tokens[2].rank)]
        await pilot.press("right", "right")
        token = pane.score.tokens[2]
        shown = side_text(pilot)
        assert f"rank {token.rank}" in shown and f"loss {token.loss:.3f}" in shown
        assert "Top alternatives" in shown and "mean loss" in shown
        await pilot.press("c")
        assert view.mode == "prob" and view._style(3) in BUCKET_STYLES


async def test_the_logit_lens_follows_the_selected_token(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await score(pilot, pane)
        await pilot.press("l")
        await wait_for(pilot, lambda: pane.lens is not None and not pane.busy, what="the lens")
        assert pane.lens.position == 1 and len(pane.lens.rows) == pane.loaded.model.cfg.n_layers
        assert "Logit lens" in side_text(pilot) and "L2" in side_text(pilot)
        await pilot.press("right")
        await wait_for(pilot, lambda: pane.lens.position == 2 and not pane.busy, what="the lens to move")


async def test_attention_strips_and_the_heads_overview(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await score(pilot, pane)
        await pilot.press("end", "a")
        await wait_for(pilot, lambda: pane.maps is not None and not pane.busy, what="the attention")
        cfg = pane.loaded.model.cfg
        shown = side_text(pilot)
        assert "Attention of" in shown and f"L{cfg.n_layers}H{cfg.n_heads}" in shown
        await pilot.press("h")
        shown = side_text(pilot)
        assert str(cfg.n_heads) in shown and f"L{cfg.n_layers}" in shown and "previous" in shown and "Layers x heads" in shown


async def test_comparing_with_a_second_model_chosen_in_the_picker(data_dir):
    make_run(data_dir, "tiny-run", evals=2)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        # Inspect the run's checkpoint, then compare it with itself: no token changes.
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
        options = app.screen.query_one(OptionList)
        run_index = next(i for i in range(options.option_count)
                         if "tiny-run (latest" in str(options.get_option_at_index(i).prompt))
        options.highlighted = run_index
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ModelPicker))
        await score(pilot, pane)
        assert pane.loaded.model.cfg == TINY
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
        app.screen.query_one(OptionList).highlighted = run_index
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.comparison is not None and not pane.busy, what="the comparison")
        assert all(d.delta == 0 for d in pane.comparison.diffs)
        assert pane.tokens_view.mode == "diff" and "B - A: +0.000" in side_text(pilot)
        await pilot.press("t")
        assert "B - A" in side_text(pilot)


async def test_errors_are_one_line_notifications(data_dir, tmp_path, monkeypatch):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await pilot.press("ctrl+s")
        assert "Nothing to score" in list(app._notifications)[-1].message
        # A model that cannot load.
        from tui_gpt.app.services.model_catalog import ModelChoice

        pane.choice = ModelChoice("file", str(tmp_path / "missing"))
        pane.text_input.load_text(TEXT)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not pane.busy, what="the failure")
        message = list(app._notifications)[-1].message
        assert pane.score is None and "\n" not in message and "missing" in message
        # Different vocabularies.
        pane.choice = ModelChoice("fresh", "gpt-nano")
        await score(pilot, pane)
        import engine.weights.resolver as resolver
        from engine.model.gpt import GPTModel

        monkeypatch.setattr(resolver, "resolve_model", lambda spec, device="cpu": resolver.ResolvedModel(
            GPTModel(GPTConfig(vocab_size=100, context_length=32, emb_dim=32, n_heads=2, n_layers=1)), "odd"))
        pane.compare_label = "odd"
        pane._start("compare", pane._compare, ModelChoice("fresh", "gpt-micro"), pane.loaded, pane.score.ids)
        await wait_for(pilot, lambda: not pane.busy, what="the failure")
        assert "different vocabularies" in list(app._notifications)[-1].message


async def test_a_text_file_is_opened_and_scored(data_dir, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        app.screen.query_one("#file-path").value = str(path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.score is not None and not pane.busy, what="the score")
        assert pane.text_input.text == TEXT and "".join(pane.tokens_view.texts) == TEXT


async def test_the_cursor_stays_in_view_in_a_long_text(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await open_inspect(pilot)
        await score(pilot, pane, " ".join([TEXT] * 12))
        scroll = app.query_one("#inspect-scroll")
        assert scroll.scroll_y == 0
        await pilot.press("end")
        await pilot.pause(0.2)
        assert scroll.scroll_y > 0 and scroll.scroll_y >= scroll.max_scroll_y - scroll.size.height
        await pilot.press("home")
        await pilot.pause(0.2)
        assert scroll.scroll_y == 0
