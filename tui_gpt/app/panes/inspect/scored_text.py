"""A scored text, token by token, coloured by how the model rated each one, with a cursor.

Colours follow GLTR: the token was the model's top-1 guess, in its top 10, its
top 100, or beyond; or, by probability, the same four shades by p; or, once a
second model was compared, whether it got better or worse there.
"""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Region
from textual.message import Message
from textual.widgets import Static

from tui_gpt.app import bindings

# Four buckets, best first, and the colours they are shown in.
BUCKET_STYLES = ("on #1f6f3a", "on #7a6a12", "on #8a2f2f", "on #5b2a7a")
RANK_BUCKETS = ((1, "top 1"), (10, "top 10"), (100, "top 100"), (None, "beyond"))
PROB_BUCKETS = ((0.5, "p ≥ 50%"), (0.1, "p ≥ 10%"), (0.01, "p ≥ 1%"), (None, "p < 1%"))
DIFF_STYLES = {"better": "on #1f6f3a", "same": "", "worse": "on #8a2f2f"}
DIFF_THRESHOLD = 0.1  # nats: smaller changes count as the same
COLOUR_MODES = ("rank", "prob", "diff")


def rank_bucket(rank: int) -> int:
    for index, (limit, _) in enumerate(RANK_BUCKETS):
        if limit is None or rank <= limit:
            return index
    return len(RANK_BUCKETS) - 1


def prob_bucket(prob: float) -> int:
    for index, (limit, _) in enumerate(PROB_BUCKETS):
        if limit is None or prob >= limit:
            return index
    return len(PROB_BUCKETS) - 1


def diff_kind(delta: float) -> str:
    return "better" if delta < -DIFF_THRESHOLD else "worse" if delta > DIFF_THRESHOLD else "same"


def legend(mode: str) -> Text:
    if mode == "diff":
        return Text.assemble(("B better", DIFF_STYLES["better"]), " ", ("B worse", DIFF_STYLES["worse"]))
    labels = RANK_BUCKETS if mode == "rank" else PROB_BUCKETS
    parts: list = []
    for style, (_, label) in zip(BUCKET_STYLES, labels):
        parts += [(label, style), " "]
    return Text.assemble(*parts)


class ScoredTextView(Static, can_focus=True):
    """The tokens of the scored text; the cursor picks the token the side panel describes."""

    BINDINGS = bindings.INSPECT_TOKENS

    class Selected(Message):
        def __init__(self, position: int) -> None:
            super().__init__()
            self.position = position

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.texts: list[str] = []
        self.ranks: list[int | None] = []  # None for the first token, which is not scored
        self.probs: list[float | None] = []
        self.deltas: list[float | None] | None = None
        self.mode = "rank"
        self.cursor = 0

    def show(self, texts: list[str], ranks: list[int | None], probs: list[float | None]) -> None:
        self.texts, self.ranks, self.probs, self.deltas = texts, ranks, probs, None
        if self.mode == "diff":
            self.mode = "rank"
        self.cursor = min(1, len(texts) - 1)
        self._redraw()

    def show_deltas(self, deltas: list[float | None]) -> None:
        self.deltas = deltas
        self.mode = "diff"
        self._redraw()

    def _redraw(self) -> None:
        text = Text()
        for index, token in enumerate(self.texts):
            style = self._style(index)
            if index == self.cursor:
                style = f"{style} reverse bold".strip()
            text.append(token.replace("\n", "⏎\n"), style=style)
        self.update(text)
        self.post_message(self.Selected(self.cursor))
        self.call_after_refresh(self._keep_cursor_in_view, text)

    def _keep_cursor_in_view(self, text: Text) -> None:
        """Scroll the container so that the cursor's line is shown (lines as Rich wraps them)."""
        width = self.content_size.width
        if width <= 0 or self.parent is None:
            return
        offset = sum(len(t) + t.count("\n") for t in self.texts[:self.cursor])
        seen = 0
        for line_number, line in enumerate(text.wrap(self.app.console, width)):
            seen += len(line) + 1
            if seen > offset:
                self.parent.scroll_to_region(Region(0, line_number, 1, 1), animate=False)
                return

    def _style(self, index: int) -> str:
        if self.ranks[index] is None:
            return "dim"
        if self.mode == "diff" and self.deltas is not None:
            return DIFF_STYLES[diff_kind(self.deltas[index])]
        if self.mode == "prob":
            return BUCKET_STYLES[prob_bucket(self.probs[index])]
        return BUCKET_STYLES[rank_bucket(self.ranks[index])]

    def action_move(self, step: int) -> None:
        if self.texts:
            self.cursor = max(0, min(len(self.texts) - 1, self.cursor + step))
            self._redraw()

    def action_edge(self, last: bool) -> None:
        if self.texts:
            self.cursor = len(self.texts) - 1 if last else 0
            self._redraw()

    def action_colours(self) -> None:
        modes = COLOUR_MODES if self.deltas is not None else COLOUR_MODES[:2]
        self.mode = modes[(modes.index(self.mode) + 1) % len(modes)]
        self._redraw()

