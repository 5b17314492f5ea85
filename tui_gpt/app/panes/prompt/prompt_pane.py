"""The prompt pane: a transcript, a prompt, the settings, and completions streaming in.

Generation runs in a worker thread that fills a TokenBuffer; a timer drains
the buffer into the streaming exchange at most 60 times a second, less often
when drawing costs the generation too much CPU (DrainPacer), so the screen is
redrawn per batch of tokens, never per token.
"""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import ContentSwitcher
from textual.worker import Worker, WorkerState, get_current_worker

from tui_gpt.app import bindings
from tui_gpt.app.services.engine_session import EngineSession
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.services.generation_job import DrainPacer, GenerationSettings, TokenBuffer, run_generation
from tui_gpt.app.messages import ModelLoaded, ModelLoadFailed, ModelStatus
from tui_gpt.app.services.model_catalog import DEFAULT_CHOICE, LoadedModel, ModelChoice, load_choice
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.screens.model_picker import pick_model
from tui_gpt.app.services.transcripts import Exchange
from tui_gpt.app.panes.prompt.exchange_view import ExchangeView
from tui_gpt.app.panes.prompt.generation_settings import GenerationSettingsPanel, SettingsError
from tui_gpt.app.panes.prompt.prompt_input import PromptInput
from tui_gpt.app.panes.prompt.token_inspector import TokenInspector
from tui_gpt.app.panes.prompt.transcript_view import TranscriptView

SHOWN_EXCHANGES = 100  # older exchanges stay in the file, not on screen


class PromptPane(Vertical):
    BINDINGS = bindings.PROMPT_PANE

    generating: reactive[bool] = reactive(False, bindings=True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session: EngineSession | None = None
        self.loaded: LoadedModel | None = None
        self.pending_choice: ModelChoice | None = None
        self._buffer: TokenBuffer | None = None
        self._streaming_view: ExchangeView | None = None
        self._flush_timer: Timer | None = None
        self._pacer: DrainPacer | None = None
        self._worker: Worker | None = None
        self._started = 0.0

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="chat"):
                yield TranscriptView(id="transcript")
                yield PromptInput(id="prompt-input")
            with ContentSwitcher(initial="settings", id="prompt-side"):
                yield GenerationSettingsPanel(id="settings")
                yield TokenInspector(id="inspector")

    @property
    def transcript(self) -> TranscriptView:
        return self.query_one(TranscriptView)

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def settings_panel(self) -> GenerationSettingsPanel:
        return self.query_one(GenerationSettingsPanel)

    def focus_default(self) -> None:
        self.prompt_input.focus()

    # -- the engine and the model ---------------------------------------------------------------

    def engine_ready(self, session: EngineSession) -> None:
        self.session = session
        try:
            settings = GenerationSettings.from_dict(session.state.get("generation") or {})
        except (TypeError, ValueError):
            settings = GenerationSettings()
        self.settings_panel.load(settings)
        try:
            choice = ModelChoice.from_dict(session.state.get("model") or {})
        except ValueError:
            choice = DEFAULT_CHOICE
        self.load_model(choice)

    def load_model(self, choice: ModelChoice) -> None:
        if self.session is None:
            self.notify("The engine is still loading; choose the model again in a moment.", severity="warning")
            return
        if self.generating:
            self.action_stop()
        self.pending_choice = choice
        self.settings_panel.show_model(f"loading {choice.label}…")
        self.post_message(ModelStatus(f"loading {choice.label}…"))
        self._load_model(choice)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model")
    def _load_model(self, choice: ModelChoice) -> None:
        session = self.session
        try:
            loaded = load_choice(choice, session.store, session.device)
            exchanges = session.transcripts.load(loaded.transcript_key)
        except Exception as exc:  # a corrupt checkpoint, a missing file, out of memory...
            if not get_current_worker().is_cancelled:
                self.post_message(ModelLoadFailed(choice, describe_error(exc)))
            return
        if not get_current_worker().is_cancelled:  # another model was asked for meanwhile
            self.post_message(ModelLoaded(loaded, exchanges))

    async def on_model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        self.loaded, self.pending_choice = loaded, None
        self.session.state.set("model", loaded.choice.to_dict())
        self.settings_panel.show_model(loaded.description)
        self.post_message(ModelStatus(loaded.description))
        for note in loaded.notes:
            self.notify(note, title="Model")
        shown = message.exchanges[-SHOWN_EXCHANGES:]
        hidden = len(message.exchanges) - len(shown)
        hint = f"Prompting {loaded.description}."
        if hidden:
            hint += f" {hidden} earlier exchanges are kept in the transcript file."
        if not shown:
            hint += " Type a prompt below and press Enter."
        await self.transcript.set_exchanges(shown, hint)

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.pending_choice = None
        self.notify(f"Cannot load {message.choice.label}: {message.error}", title="Model", severity="error",
                    timeout=10)
        if self.loaded is None and message.choice != DEFAULT_CHOICE:
            self.load_model(DEFAULT_CHOICE)  # never leave a first launch without a model
        else:
            text = self.loaded.description if self.loaded else "no model loaded"
            self.settings_panel.show_model(text)
            self.post_message(ModelStatus(text))

    def action_choose_model(self) -> None:
        pick_model(self, self.session, self.loaded.choice if self.loaded else None, self.load_model)

    # -- generating -----------------------------------------------------------------------------

    async def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        problem = self._why_not_generate()
        if problem:
            self.notify(problem + " Your prompt is kept.", severity="warning")
            return
        try:
            settings = self.settings_panel.read()
        except SettingsError as exc:
            self.notify(f"{exc}. Your prompt is kept.", title="Settings", severity="error")
            return
        self.session.state.set("generation", settings.to_dict())
        exchange = Exchange(message.text, self.loaded.description, settings.to_dict())
        self._streaming_view = await self.transcript.add_exchange(exchange)
        self.prompt_input.clear()
        self._buffer = TokenBuffer()
        self._started = time.perf_counter()
        self.transcript.streaming = True
        self.generating = True
        # A blinking cursor redraws the prompt twice a second, and each redraw of the
        # screen costs the generation CPU time: the cursor stays lit until the end.
        self.prompt_input.cursor_blink = False
        self._pacer = DrainPacer()
        self._flush_timer = self.set_timer(self._pacer.next_delay(), self._flush)
        self._worker = self._generate(self.loaded.model, message.text, settings, self._buffer)

    def _why_not_generate(self) -> str | None:
        if self.session is None:
            return "The engine is still loading."
        if self.generating:
            return "Still generating: Esc stops it."
        if self.loaded is None or self.pending_choice is not None:
            return "The model is still loading."
        return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def _generate(self, model, prompt: str, settings: GenerationSettings, buffer: TokenBuffer) -> None:
        worker = get_current_worker()
        run_generation(model, self.session.tokenizer, prompt, settings, buffer, lambda: worker.is_cancelled)

    def _flush(self) -> None:
        tokens, done, error = self._buffer.take()
        if tokens:
            self._streaming_view.add_tokens(tokens)
        if done:
            self._finish(stopped=False, error=error)
        else:
            self._flush_timer = self.set_timer(self._pacer.next_delay(), self._flush)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # The generation's thread has ended: show how without waiting for the next paced update.
        if event.worker is self._worker and event.state in (WorkerState.SUCCESS, WorkerState.ERROR) \
                and self.generating:
            self._flush_timer.stop()
            self._flush()

    def action_stop(self) -> None:
        """Stop now: the screen keeps what arrived; the worker leaves before its next token."""
        self._buffer.request_stop()
        tokens, done, error = self._buffer.take()
        if tokens:
            self._streaming_view.add_tokens(tokens)
        self._finish(stopped=not done, error=error)

    def _finish(self, stopped: bool, error: str | None) -> None:
        self._flush_timer.stop()
        view = self._streaming_view
        view.exchange.seconds = time.perf_counter() - self._started
        view.finish(stopped, error)
        self.transcript.streaming = False
        self.generating = False
        self.prompt_input.cursor_blink = True
        if error:
            self.notify(error, title="Generation failed", severity="error", timeout=10)
        try:
            self.session.transcripts.append(self.loaded.transcript_key, view.exchange)
        except OSError as exc:
            self.notify(f"Cannot save the transcript: {describe_error(exc)}", severity="error")

    # -- inspecting -----------------------------------------------------------------------------

    def action_inspect(self) -> None:
        if self.transcript.has_focus:
            self.prompt_input.focus()
        else:
            self.transcript.focus()

    @on(DescendantFocus)
    def _show_side_panel(self, event: DescendantFocus) -> None:
        inspecting = event.widget is self.transcript
        self.query_one(ContentSwitcher).current = "inspector" if inspecting else "settings"
        self.refresh_bindings()

    def on_transcript_view_token_selected(self, message: TranscriptView.TokenSelected) -> None:
        self.query_one(TokenInspector).show_token(message.token, message.index, message.count)

    def on_transcript_view_left(self) -> None:
        self.prompt_input.focus()

    def on_transcript_view_clear_requested(self) -> None:
        if self.loaded is None:
            return
        loaded = self.loaded

        async def clear(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                self.session.transcripts.clear(loaded.transcript_key)
            except OSError as exc:
                self.notify(f"Cannot clear the transcript: {describe_error(exc)}", severity="error")
                return
            await self.transcript.set_exchanges([], f"Prompting {loaded.description}. The transcript is empty.")
            self.prompt_input.focus()

        self.app.push_screen(
            ConfirmScreen(f"Clear the transcript of {loaded.choice.label}?", "Its prompts and completions are deleted.",
                          yes_label="Clear"),
            clear,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating
        if action == "choose_model":
            return not self.transcript.has_focus  # a prompt-side action; inspecting keeps the footer short
        return True
