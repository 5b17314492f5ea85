"""The transcript: every exchange with the current model, and the token inspector's cursor.

Focusing the transcript turns on inspection: a cursor sits on one token of
one completion, the arrow keys move it, and each move reports the token so
the pane can show the model's alternatives at that position.
"""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from tui_gpt.app import bindings
from tui_gpt.app.services.transcripts import Exchange, TokenRecord
from tui_gpt.app.panes.prompt.exchange_view import ExchangeView


class TranscriptView(VerticalScroll, can_focus=True):
    BINDINGS = bindings.TRANSCRIPT

    colours: reactive[bool] = reactive(False)
    # Set by the prompt pane just before its own `generating`, whose change refreshes
    # the screen's key bindings (this view's too): one footer rebuild, not two.
    streaming: reactive[bool] = reactive(False)

    class TokenSelected(Message):
        """The inspector's cursor moved (token is None: nothing to inspect)."""

        def __init__(self, token: TokenRecord | None, index: int, count: int) -> None:
            super().__init__()
            self.token = token
            self.index = index
            self.count = count

    class ClearRequested(Message):
        pass

    class Left(Message):
        """The person asked to go back to the prompt."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._exchange_index = -1  # which exchange the cursor is in
        self._token_index = -1

    def compose(self):
        yield Static("Loading the engine…", id="transcript-hint")

    @property
    def views(self) -> list[ExchangeView]:
        return list(self.query_children(ExchangeView))

    def show_hint(self, text: str) -> None:
        self.query_one("#transcript-hint", Static).update(text)

    async def set_exchanges(self, exchanges: list[Exchange], hint: str) -> None:
        await self.remove_children(ExchangeView)
        await self.mount_all([ExchangeView(e, colours=self.colours) for e in exchanges])
        self.show_hint(hint)
        self._exchange_index = self._token_index = -1
        self.scroll_end(animate=False, immediate=True)
        self.anchor()

    async def add_exchange(self, exchange: Exchange) -> ExchangeView:
        view = ExchangeView(exchange, colours=self.colours, streaming=True)
        await self.mount(view)
        self.anchor()  # follow the streaming text unless the person scrolls away
        return view

    # -- the inspector's cursor ----------------------------------------------------------------

    def on_focus(self) -> None:
        views = self.views
        for view in views:
            view.set_inspecting(True)
        if views and not 0 <= self._exchange_index < len(views):
            self._exchange_index = len(views) - 1
            self._token_index = len(views[-1].exchange.tokens) - 1
        self._show_cursor()

    def on_blur(self) -> None:
        for view in self.views:
            view.set_inspecting(False)

    def _show_cursor(self) -> None:
        views = self.views
        if not views:
            self.post_message(self.TokenSelected(None, -1, 0))
            return
        self._exchange_index = min(max(self._exchange_index, 0), len(views) - 1)
        current = views[self._exchange_index]
        tokens = current.exchange.tokens
        self._token_index = min(max(self._token_index, 0), len(tokens) - 1) if tokens else -1
        for view in views:
            view.select(self._token_index if view is current and self.has_focus else None)
        current.scroll_visible(animate=False)
        token = tokens[self._token_index] if tokens else None
        self.post_message(self.TokenSelected(token, self._token_index, len(tokens)))

    def on_exchange_view_token_hovered(self, message: ExchangeView.TokenHovered) -> None:
        if self.has_focus:
            self._exchange_index = self.views.index(message.view)
            self._token_index = message.index
            self._show_cursor()

    def action_move_token(self, delta: int) -> None:
        self._token_index += delta
        self._show_cursor()

    def action_move_exchange(self, delta: int) -> None:
        self._exchange_index += delta
        self._show_cursor()

    def action_first_token(self) -> None:
        self._token_index = 0
        self._show_cursor()

    def action_last_token(self) -> None:
        views = self.views
        if views:
            self._token_index = len(views[min(self._exchange_index, len(views) - 1)].exchange.tokens) - 1
        self._show_cursor()

    # -- other actions -----------------------------------------------------------------------

    def watch_colours(self, colours: bool) -> None:
        for view in self.views:
            view.set_colours(colours)

    def action_toggle_colours(self) -> None:
        self.colours = not self.colours

    def action_copy(self) -> None:
        views = self.views
        if views:
            exchange = views[self._exchange_index].exchange
            self.app.copy_to_clipboard(exchange.prompt + exchange.completion)
            self.notify("Copied the prompt and its completion")

    def action_clear(self) -> None:
        self.post_message(self.ClearRequested())

    def action_leave(self) -> None:
        self.post_message(self.Left())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("move_token", "move_exchange", "first_token", "last_token", "copy", "clear"):
            return bool(self.views) and not (self.streaming and action == "clear")
        if action == "leave":
            return not self.streaming  # while streaming, Esc stops the generation instead
        return True
