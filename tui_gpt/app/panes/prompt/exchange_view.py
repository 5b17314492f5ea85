"""One prompt and its completion, with the tokens optionally coloured by probability."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual import events
from textual.color import Color
from textual.message import Message
from textual.widgets import Static

from tui_gpt.app.services.generation_job import GenerationSettings
from tui_gpt.app.services.transcripts import Exchange, TokenRecord
from tui_gpt.app.widgets.steady_update import update_steady

# Probabilities are coloured on a log scale: 1 in 1000 or less is the coldest colour.
_LOWEST_LOG_PROB = -3.0
# While a completion streams in, its view grows this many lines at a time: each
# growth lays out and scrolls the whole transcript, which costs far more than
# drawing the new tokens.
_GROWTH_LINES = 8


def probability_colour(prob: float, low: Color, high: Color) -> Color:
    """`low` for unlikely tokens, `high` for near-certain ones, blended in between on a log scale."""
    level = math.log10(max(prob, 1e-12))
    return low.blend(high, min(1.0, max(0.0, 1 - level / _LOWEST_LOG_PROB)))


class ExchangeView(Static):
    """The prompt in bold, the completion after it, and a line saying how it was made."""

    class TokenHovered(Message):
        """The mouse is over one of the completion's tokens."""

        def __init__(self, view: "ExchangeView", index: int) -> None:
            super().__init__()
            self.view = view
            self.index = index

    def __init__(self, exchange: Exchange, colours: bool = False, streaming: bool = False) -> None:
        super().__init__(classes="exchange")
        self.exchange = exchange
        self.colours = colours
        self.streaming = streaming
        self.selected: int | None = None  # the token the inspector points at
        self.inspecting = False  # tokens can be pointed at (with the mouse too)

    def on_mount(self) -> None:
        self.show()

    def add_tokens(self, tokens: list[TokenRecord]) -> None:
        self.exchange.tokens.extend(tokens)
        self.show()

    def finish(self, stopped: bool, error: str | None) -> None:
        self.exchange.stopped, self.exchange.error, self.streaming = stopped, error, False
        self.styles.min_height = None  # back to the text's own height
        self.show()

    def select(self, index: int | None) -> None:
        if index != self.selected:  # the cursor moving touches two exchanges at most
            self.selected = index
            self.show()

    def set_colours(self, colours: bool) -> None:
        self.colours = colours
        self.show()

    def set_inspecting(self, inspecting: bool) -> None:
        self.inspecting = inspecting
        if not inspecting:
            self.selected = None
        self.show()

    def show(self) -> None:
        text = self._render_text()
        if self.streaming and self.size:
            self._grow_to_fit(text)
        else:
            update_steady(self, text)

    def _grow_to_fit(self, text: Text) -> None:
        """Show streaming `text`, making room for it `_GROWTH_LINES` lines at a time."""
        self.update(text, layout=False)
        needed = self.get_content_height(self.size, self.app.size, self.content_region.width)
        if needed > self.content_region.height:
            self.styles.min_height = needed + _GROWTH_LINES  # lays out the transcript once

    def _render_text(self) -> Text:
        text = Text(self.exchange.prompt, style="bold")
        if self.colours or self.inspecting:
            self._append_tokens(text)
        else:  # one span: far cheaper to draw, which matters while tokens stream in
            text.append(self.exchange.completion)
        if self.streaming:
            text.append("▍")
        text.append("\n")
        text.append(self._footnote(), style="dim italic")
        return text

    def _append_tokens(self, text: Text) -> None:
        """Each token its own span: coloured by probability, marked when selected, known to the mouse."""
        theme = self.app.current_theme
        low, high = Color.parse(theme.error), Color.parse(theme.success or theme.primary)
        for index, token in enumerate(self.exchange.tokens):
            style = Style(meta={"token": index})
            if self.colours:
                style += Style(color=probability_colour(token.prob, low, high).rich_color)
            if index == self.selected:
                style += Style(reverse=True)
            text.append(token.text, style)

    def _footnote(self) -> str:
        exchange = self.exchange
        parts = [exchange.model] if exchange.model else []
        if exchange.settings:
            parts.append(GenerationSettings.from_dict(exchange.settings).describe())
        parts.append(f"{len(exchange.tokens)} generated")
        if exchange.seconds and exchange.tokens and not self.streaming:
            parts.append(f"{len(exchange.tokens) / exchange.seconds:,.0f} tok/s")
        if self.streaming:
            parts.append("generating…")
        elif exchange.error:
            parts.append(f"failed: {exchange.error}")
        elif exchange.stopped:
            parts.append("stopped")
        return " · ".join(parts)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        index = event.style.meta.get("token")
        if index is not None:
            self.post_message(self.TokenHovered(self, index))
