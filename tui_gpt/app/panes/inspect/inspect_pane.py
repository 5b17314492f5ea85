"""The Inspect pane: type, paste or open a text, score it, and look inside the model at any token.

The text is scored with one model (Ctrl+O chooses it; by default the one last
prompted); each token is coloured by its rank, and the side panel shows the
selected token's odds, the logit lens there, its attention per head, every
head's habits, or a comparison with a second model. All model work runs in a
worker thread; failures are one-line notifications.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.message import Message
from textual.widgets import Static, TextArea
from textual.worker import get_current_worker

from tui_gpt.app import bindings
from tui_gpt.app.panes.inspect.attention_view import render_overview, render_token_attention
from tui_gpt.app.panes.inspect.compare_view import render_comparison
from tui_gpt.app.panes.inspect.lens_view import render_lens
from tui_gpt.app.panes.inspect.scored_text import ScoredTextView, legend
from tui_gpt.app.panes.inspect.token_detail import render_token, render_totals
from tui_gpt.app.screens.model_picker import pick_model
from tui_gpt.app.screens.open_file import OpenFileScreen
from tui_gpt.app.services.engine_session import EngineSession
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.services.model_catalog import DEFAULT_CHOICE, LoadedModel, ModelChoice, load_choice

class InspectPane(Vertical):
    BINDINGS = bindings.INSPECT_PANE + bindings.INSPECT_VIEWS

    class Done(Message):
        """A worker finished `what` ("score", "lens", "attention", "compare") with `result`."""

        def __init__(self, what: str, result: Any) -> None:
            super().__init__()
            self.what = what
            self.result = result

    class Failed(Message):
        def __init__(self, what: str, error: str) -> None:
            super().__init__()
            self.what = what
            self.error = error

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session: EngineSession | None = None
        self.choice: ModelChoice | None = None
        self.loaded: LoadedModel | None = None  # the model `choice` names, once a worker loaded it
        self.score = None  # engine.insight.scoring.TextScore of the text shown
        self.maps = None  # its attention maps, computed on first request
        self.lens = None
        self.comparison = None
        self.compare_label = ""
        self.side = "token"
        self.busy = ""

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="inspect-main"):
                with VerticalScroll(id="inspect-scroll"):
                    yield ScoredTextView(id="inspect-tokens")
                yield Static(id="inspect-legend")
                yield TextArea(id="inspect-input", soft_wrap=True, compact=True)
            with VerticalScroll(id="inspect-side"):
                yield Static(id="inspect-detail")

    def on_mount(self) -> None:
        self.query_one("#inspect-input", TextArea).border_title = "Text"
        self.query_one("#inspect-scroll").border_title = "Tokens"
        self._show_side(Text("Type or paste a text below (or open a file: Ctrl+L), then Ctrl+S scores it.",
                             style="dim"))

    @property
    def tokens_view(self) -> ScoredTextView:
        return self.query_one(ScoredTextView)

    @property
    def text_input(self) -> TextArea:
        return self.query_one("#inspect-input", TextArea)

    def focus_default(self) -> None:
        (self.tokens_view if self.score is not None else self.text_input).focus()

    def engine_ready(self, session: EngineSession) -> None:
        self.session = session
        try:
            self.choice = ModelChoice.from_dict(session.state.get("model") or {})
        except ValueError:
            self.choice = DEFAULT_CHOICE
        self._show_legend()

    # -- actions ----------------------------------------------------------------------------------

    def action_score(self) -> None:
        text = self.text_input.text
        if self.session is None:
            self.notify("The engine is still loading.", title="Inspect", severity="warning")
        elif not text.strip():
            self.notify("Nothing to score: type or paste a text, or open a file (Ctrl+L).", title="Inspect",
                        severity="warning")
        else:
            self._start("score", self._score, self.choice, text)

    def action_choose_model(self) -> None:
        self._pick("Choose the model to inspect", self.choice, self._use_model)

    def _use_model(self, choice: ModelChoice) -> None:
        self.choice = choice
        self._show_legend()
        if self.text_input.text.strip():
            self.action_score()

    def action_open_file(self) -> None:
        def opened(path: Path | None) -> None:
            if path is None:
                return
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problem = "not a UTF-8 text file" if isinstance(exc, UnicodeDecodeError) else describe_error(exc)
                self.notify(f"Cannot open {path}: {problem}", title="Open", severity="error")
                return
            self.text_input.load_text(text)
            self.action_score()

        self.app.push_screen(OpenFileScreen("Open a text file to score"), opened)

    def action_side(self, view: str) -> None:
        if self.score is None:
            return
        self.side = view
        if view == "lens":
            self._start("lens", self._lens, self.loaded, self.score.ids, self.tokens_view.cursor)
        elif view in ("attention", "heads") and self.maps is None:
            self._start("attention", self._attention, self.loaded, self.score.ids)
        elif view == "compare" and self.comparison is None:
            self.action_compare()
        else:
            self._render_side()

    def action_compare(self) -> None:
        if self.score is None:
            return

        def chosen(choice: ModelChoice) -> None:
            self.compare_label = choice.label
            self._start("compare", self._compare, choice, self.loaded, self.score.ids)

        self._pick("Choose a model to compare with", None, chosen)

    def action_edit(self) -> None:
        self.text_input.focus()

    def _pick(self, question: str, current: ModelChoice | None, then: Callable[[ModelChoice], None]) -> None:
        pick_model(self, self.session, current, then, question)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        on_tokens = self.tokens_view.has_focus
        if action in ("side", "compare", "edit"):
            return on_tokens and self.score is not None
        return not on_tokens  # Esc leads back to the text, where these are; the footer stays within 80 columns

    @on(DescendantFocus)
    def _refresh_keys(self, event: DescendantFocus) -> None:
        self.refresh_bindings()

    # -- workers (off the UI thread) ------------------------------------------------------------------

    def _start(self, what: str, job: Callable[..., Any], *args: Any) -> None:
        self.busy = what
        self._show_legend()
        self._run(what, job, *args)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect")
    def _run(self, what: str, job: Callable[..., Any], *args: Any) -> None:
        try:
            result = job(*args)
        except Exception as exc:  # an empty text, a model that cannot load, different vocabularies...
            if not get_current_worker().is_cancelled:
                self.post_message(self.Failed(what, describe_error(exc)))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self.Done(what, result))

    def _model(self, choice: ModelChoice) -> LoadedModel:
        loaded = self.loaded
        if loaded is not None and loaded.choice == choice:
            return loaded
        return load_choice(choice, self.session.store, self.session.device)

    def _score(self, choice: ModelChoice, text: str):
        from engine.insight.scoring import score_text

        loaded = self._model(choice)
        return loaded, score_text(loaded.model, text)

    @staticmethod
    def _lens(loaded: LoadedModel, ids: list[int], position: int):
        from engine.insight.logit_lens import logit_lens_ids

        return logit_lens_ids(loaded.model, ids, position)

    @staticmethod
    def _attention(loaded: LoadedModel, ids: list[int]):
        from engine.insight.attention import attention_maps_ids

        return attention_maps_ids(loaded.model, ids)

    def _compare(self, choice: ModelChoice, loaded_a: LoadedModel, ids: list[int]):
        from engine.insight.compare import compare_ids

        other = self._model(choice)
        return compare_ids(loaded_a.model, other.model, ids)

    # -- results ----------------------------------------------------------------------------------

    def on_inspect_pane_done(self, message: Done) -> None:
        self.busy = ""
        if message.what == "score":
            self.loaded, self.score = message.result
            self.maps = self.lens = self.comparison = None
            self.side = "token"
            view = self.tokens_view
            scored = {t.position: t for t in self.score.tokens}
            texts = [self.session.tokenizer.decode([i]) for i in self.score.ids]
            view.show(texts, [scored[i].rank if i in scored else None for i in range(len(texts))],
                      [scored[i].prob if i in scored else None for i in range(len(texts))])
            view.focus()
        elif message.what == "lens":
            self.lens = message.result
        elif message.what == "attention":
            self.maps = message.result
        elif message.what == "compare":
            self.comparison = message.result
            self.side = "compare"
            deltas = {d.position: d.delta for d in self.comparison.diffs}
            self.tokens_view.show_deltas([deltas.get(i) for i in range(len(self.score.ids))])
        self._show_legend()
        self._render_side()

    def on_inspect_pane_failed(self, message: Failed) -> None:
        self.busy = ""
        self._show_legend()
        self.notify(message.error, title=f"Inspect: {message.what}", severity="error", timeout=10)

    def on_scored_text_view_selected(self, message: ScoredTextView.Selected) -> None:
        if self.side == "lens" and self.score is not None and (self.lens is None
                                                                or self.lens.position != message.position):
            self._start("lens", self._lens, self.loaded, self.score.ids, message.position)
            return
        self._show_legend()
        self._render_side()

    # -- drawing ----------------------------------------------------------------------------------

    def _show_legend(self) -> None:
        model = self.loaded.description if self.loaded and self.loaded.choice == self.choice else (
            self.choice.label if self.choice else "no model yet")
        line = legend(self.tokens_view.mode)
        line.append(f" {self.busy}…" if self.busy else "", style="italic")
        line.append(f"  {model}", style="dim")
        self.query_one("#inspect-legend", Static).update(line)

    def _render_side(self) -> None:
        if self.score is None:
            return
        position = self.tokens_view.cursor
        count = len(self.score.ids)
        if self.side == "lens" and self.lens is not None:
            self._show_side(render_lens(self.lens))
        elif self.side == "attention" and self.maps is not None:
            self._show_side(render_token_attention(self.maps, position))
        elif self.side == "heads" and self.maps is not None:
            self._show_side(render_overview(self.maps))
        elif self.side == "compare" and self.comparison is not None:
            self._show_side(render_comparison(self.comparison, self.loaded.description, self.compare_label))
        else:
            token = self.score.tokens[position - 1] if position > 0 else None
            delta = self.comparison.diffs[position - 1].delta if self.comparison and position > 0 else None
            self._show_side(Group(render_token(token, position, count, delta), "",
                                  render_totals(self.score.totals())))

    def _show_side(self, renderable) -> None:
        self.query_one("#inspect-detail", Static).update(renderable)
