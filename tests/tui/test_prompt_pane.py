"""The prompt pane, driven with keys: streaming, stopping, settings, the transcript and the token inspector."""

from __future__ import annotations

import asyncio
import threading

import pytest
from textual.widgets import Input, OptionList

from tui_gpt.app.services import engine_session
from tui_gpt.app.app import TuiGptApp
from tui_gpt.app.services.model_catalog import ModelChoice
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.screens.model_picker import ModelPicker
from tui_gpt.app.services.transcripts import Exchange, TokenRecord, TranscriptStore
from tui_gpt.app.panes.prompt.exchange_view import ExchangeView
from tui_gpt.app.panes.prompt.prompt_pane import PromptPane
from tui_gpt.app.panes.prompt.token_inspector import TokenInspector

from .helpers import shown_text, wait_for, wait_until_ready

PROMPT = "Every effort moves you"


def set_setting(app: TuiGptApp, name: str, value: str) -> None:
    app.query_one(f"#setting-{name}", Input).value = value


async def type_prompt(pilot, text: str = PROMPT) -> None:
    """Type key by key (slow: used where typing itself is under test)."""
    pilot.app.query_one("#prompt-input").focus()
    await pilot.press(*["space" if c == " " else c for c in text])


async def put_prompt(pilot, text: str = PROMPT) -> None:
    """Put the text in the prompt as a paste would."""
    prompt_input = pilot.app.query_one("#prompt-input")
    prompt_input.focus()
    prompt_input.text = text
    await pilot.pause()


async def generate(pilot, text: str = PROMPT) -> None:
    """Paste `text`, press Enter and wait until the completion has ended."""
    await put_prompt(pilot, text)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not pilot.app.query_one(PromptPane).generating, what="the completion")


def views(app: TuiGptApp) -> list[ExchangeView]:
    return app.query_one("#transcript").views


async def test_first_launch_generates_from_an_untrained_model_and_streams_the_text(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        assert app.query_one(PromptPane).loaded.choice == ModelChoice("fresh", "gpt-nano")
        set_setting(app, "max_new_tokens", "40")
        await type_prompt(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: views(app) and not app.query_one(PromptPane).generating,
                       what="the completion")
        assert app.query_one("#prompt-input").text == ""  # handed over to the transcript
        exchange = views(app)[-1].exchange
        assert exchange.prompt == PROMPT
        assert len(exchange.tokens) == 40 and not exchange.stopped
        assert exchange.completion.strip()
        shown = str(views(app)[-1].render())
        assert shown.startswith(PROMPT + exchange.completion)
        assert "40 generated" in shown_text(views(app)[-1])
    saved = TranscriptStore(data_dir / "transcripts").load(("fresh", "gpt-nano"))
    assert [e.completion for e in saved] == [exchange.completion]


async def test_tokens_reach_the_screen_in_batches_not_one_render_per_token(data_dir, monkeypatch):
    updates = []
    original = ExchangeView.add_tokens
    monkeypatch.setattr(ExchangeView, "add_tokens", lambda self, tokens: (updates.append(len(tokens)),
                                                                         original(self, tokens)))
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "100")
        await put_prompt(pilot, "Hello")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.query_one(PromptPane).generating, what="the completion")
        seconds = loop.time() - started
    assert sum(updates) == 100
    assert len(updates) <= seconds * 60 + 2  # at most one update per frame of a 60 Hz timer
    assert len(updates) < 100


async def test_escape_stops_generation_at_once_keeping_the_text(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "100000")
        await put_prompt(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(views(app)[-1].exchange.tokens) >= 5, what="some tokens")
        await pilot.press("escape")
        pane = app.query_one(PromptPane)
        assert not pane.generating
        exchange = views(app)[-1].exchange
        kept = len(exchange.tokens)
        assert exchange.stopped and 5 <= kept < 100000
        await pilot.pause(0.3)
        assert len(exchange.tokens) == kept  # nothing arrives after the stop
        assert "stopped" in shown_text(views(app)[-1])
    saved = TranscriptStore(data_dir / "transcripts").load(("fresh", "gpt-nano"))
    assert saved[-1].stopped and len(saved[-1].tokens) == kept


async def test_transcript_is_kept_per_model_and_survives_a_restart(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "5")
        await generate(pilot, "First")
        first = views(app)[-1].exchange.completion
        # Another model has its own (empty) transcript.
        app.query_one(PromptPane).load_model(ModelChoice("fresh", "gpt-micro"))
        await wait_for(pilot, lambda: app.query_one(PromptPane).loaded.choice.name == "gpt-micro")
        await pilot.pause()
        assert views(app) == []

    again = TuiGptApp(data_dir)
    async with again.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, again)
        # The last model used comes back, with its transcript.
        assert again.query_one(PromptPane).loaded.choice == ModelChoice("fresh", "gpt-micro")
        again.query_one(PromptPane).load_model(ModelChoice("fresh", "gpt-nano"))
        await wait_for(pilot, lambda: again.query_one(PromptPane).loaded.choice.name == "gpt-nano")
        await pilot.pause()
        assert [v.exchange.prompt for v in views(again)] == ["First"]
        assert views(again)[0].exchange.completion == first


async def test_same_settings_and_seed_give_the_same_sampled_text(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        for name, value in {"max_new_tokens": "12", "temperature": "1.5", "top_k": "50", "top_p": "0.9",
                            "seed": "7"}.items():
            set_setting(app, name, value)
        for _ in range(2):
            await generate(pilot)
        first, second = (v.exchange for v in views(app))
        assert first.completion == second.completion
        assert first.settings == {"max_new_tokens": 12, "temperature": 1.5, "top_k": 50, "top_p": 0.9, "seed": 7}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("max_new_tokens", "0", "max new tokens must be between 1 and 100000"),
    ("top_p", "1.5", "top p must be between 0.0 and 1.0"),
    ("temperature", "-1", "temperature must be between 0.0 and 10.0"),
])
async def test_bad_settings_are_reported_and_the_prompt_is_kept(data_dir, name, value, message):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, name, value)
        await put_prompt(pilot, "keep me")
        await pilot.press("enter")
        await pilot.pause()
        assert not app.query_one(PromptPane).generating
        assert app.query_one("#prompt-input").text == "keep me"
        assert any(message in n.message for n in app._notifications)


async def test_first_frame_comes_before_the_engine_and_typing_works_meanwhile(data_dir, monkeypatch):
    release = threading.Event()
    real_load = engine_session.load_engine

    def slow_load(explicit):
        release.wait(10)
        return real_load(explicit)

    monkeypatch.setattr("tui_gpt.app.app.load_engine", slow_load)
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.session is None
        assert "loading engine" in shown_text(app.query_one("#status-engine"))
        await type_prompt(pilot, "early")
        await pilot.press("enter")  # too early: said so, and nothing typed is lost
        await pilot.pause()
        assert app.query_one("#prompt-input").text == "early"
        assert any("still loading" in n.message for n in app._notifications)
        release.set()
        await wait_until_ready(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: views(app) and not app.query_one(PromptPane).generating)
        assert views(app)[-1].exchange.prompt == "early"


async def test_token_inspector_moves_over_tokens_and_shows_alternatives(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "6")
        await generate(pilot)
        exchange = views(app)[-1].exchange
        await pilot.press("ctrl+t")
        assert app.focused.id == "transcript"
        assert app.query_one("#prompt-side").current == "inspector"
        inspector = shown_text(app.query_one(TokenInspector))
        last = exchange.tokens[-1]
        assert "Token 6/6" in app.query_one(TokenInspector).border_title
        assert f"{last.prob:.2%}" in inspector
        await pilot.press("left", "left")
        assert views(app)[-1].selected == 3
        assert "Token 4/6" in app.query_one(TokenInspector).border_title
        # Greedy decoding picks the most likely token: it heads the alternatives, marked as chosen.
        assert exchange.tokens[3].alternatives[0][0] == exchange.tokens[3].token_id
        await pilot.press("c")
        assert app.query_one("#transcript").colours and views(app)[-1].colours
        await pilot.press("escape")
        assert app.focused.id == "prompt-input"
        assert app.query_one("#prompt-side").current == "settings"


async def test_clearing_the_transcript_asks_first(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "3")
        await generate(pilot)
        await pilot.press("ctrl+t", "x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert len(views(app)) == 1
        assert app.focused.id == "transcript"  # back where it was
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: not views(app))
    assert TranscriptStore(data_dir / "transcripts").load(("fresh", "gpt-nano")) == []


async def test_model_picker_switches_to_another_model(data_dir):
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, ModelPicker)
        options = app.screen.query_one(OptionList)
        labels = [str(options.get_option_at_index(i).prompt).strip() for i in range(options.option_count)]
        assert "gpt-micro (untrained)" in labels
        while str(options.get_option_at_index(options.highlighted).prompt).strip() != "gpt-micro (untrained)":
            await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.query_one(PromptPane).loaded.choice == ModelChoice("fresh", "gpt-micro"))
        assert "gpt-micro" in shown_text(app.query_one("#status-model"))


async def test_a_corrupt_checkpoint_is_reported_and_the_model_kept(data_dir, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        app.query_one(PromptPane).load_model(ModelChoice("file", str(broken)))
        await wait_for(pilot, lambda: any("Cannot load" in n.message for n in app._notifications))
        await pilot.pause()
        pane = app.query_one(PromptPane)
        assert pane.loaded.choice == ModelChoice("fresh", "gpt-nano") and pane.pending_choice is None


async def test_a_streaming_completion_grows_a_few_lines_at_a_time(data_dir):
    """Each growth lays out and scrolls the whole transcript, so it makes room ahead."""
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        view = await app.query_one("#transcript").add_exchange(Exchange("Hi", "a model", {}))
        await pilot.pause()
        heights = []
        for _ in range(40):  # 40 words of 11 characters: several lines at 80 columns
            view.add_tokens([TokenRecord(1, " abcdefghij", 0.5)])
            await pilot.pause()
            heights.append(view.size.height)
        needed = view.get_content_height(view.size, app.size, view.content_region.width)
        assert needed >= 6 and view.size.height > needed  # room left for what comes next
        assert len(set(heights)) < needed // 2  # grew in steps, not one line per line
        view.finish(stopped=False, error=None)
        await pilot.pause()
        assert view.size.height == view.get_content_height(view.size, app.size, view.content_region.width)


async def test_the_end_of_a_generation_shows_without_waiting_for_the_next_paced_update(data_dir, monkeypatch):
    from tui_gpt.app.services import generation_job
    from tui_gpt.app.panes.prompt import prompt_pane

    # A pacer that would wait a minute between updates: only the worker's end can finish the exchange.
    monkeypatch.setattr(generation_job.DrainPacer, "next_delay", lambda self: 60.0)
    go = threading.Event()
    original = prompt_pane.run_generation
    monkeypatch.setattr(prompt_pane, "run_generation", lambda *args: (go.wait(10), original(*args)))
    app = TuiGptApp(data_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until_ready(pilot, app)
        set_setting(app, "max_new_tokens", "5")
        await put_prompt(pilot, "Hello")
        await pilot.press("enter")
        pane = app.query_one(PromptPane)
        await pilot.pause()
        assert pane.generating and not app.query_one("#prompt-input").cursor_blink  # steady while streaming
        go.set()
        await wait_for(pilot, lambda: not pane.generating, timeout=20, what="the end of the generation")
        assert len(views(app)[-1].exchange.tokens) == 5
        assert app.query_one("#prompt-input").cursor_blink
