"""The token inspector's side panel: the selected token and the model's top alternatives there."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui_gpt.app.services.transcripts import TokenRecord

_BAR_WIDTH = 8


def visible(text: str) -> str:
    """A token's text with its whitespace made visible (a leading space matters in GPT-2 tokens)."""
    return repr(text)[1:-1].replace(" ", "·") or "∅"


def probability_bar(prob: float, width: int = _BAR_WIDTH) -> str:
    eighths = round(max(0.0, min(1.0, prob)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(width)


class TokenInspector(Static):
    """Shows one token: its probability and the alternatives the model weighed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Token"

    def on_mount(self) -> None:
        self.show_token(None, -1, 0)

    def show_token(self, token: TokenRecord | None, index: int, count: int) -> None:
        if token is None:
            self.update(Text("Nothing generated yet.\n\nGenerate a completion, then inspect it here.", style="dim"))
            return
        self.border_title = f"Token {index + 1}/{count}"
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=12)
        table.add_column(justify="right")
        table.add_column()
        for token_id, text, prob in token.alternatives:
            style = "bold reverse" if token_id == token.token_id else ""
            table.add_row(Text(visible(text), style=style), f"{prob:6.1%}", probability_bar(prob))
        chosen = token.token_id in {token_id for token_id, _, _ in token.alternatives}
        header = Text.assemble(
            (visible(token.text), "bold"), f"  id {token.token_id}\n",
            f"p = {token.prob:.2%}" + ("" if chosen else "  (sampled outside the top)"), "\n\n",
            ("Top alternatives", "underline"),
        )
        self.update(Group(header, table))

