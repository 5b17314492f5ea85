"""The side panel's token view: probability, rank, loss and the top alternatives of one scored token."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_gpt.app.panes.prompt.token_inspector import probability_bar, visible


def render_token(score, index: int, count: int, delta: float | None = None) -> RenderableType:
    """`score` is an engine.insight.scoring.TokenScore, or None for the first token (nothing before it)."""
    if score is None:
        return Text(f"Token {index + 1}/{count}\n\nThe first token has nothing before it: it is not scored.",
                    style="dim")
    header = Text.assemble(
        (visible(score.text), "bold"), f"  #{index + 1}/{count}\n",
        f"p = {score.prob:.2%}   rank {score.rank}\n",
        f"loss {score.loss:.3f} nats  ctx {score.context}\n",
    )
    if delta is not None:
        header.append(f"B - A: {delta:+.3f} nats\n", style="green" if delta < 0 else "red" if delta > 0 else "")
    header.append("\n")
    header.append("Top alternatives", style="underline")
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column(justify="right")
    table.add_column()
    for alternative in score.alternatives:
        style = "bold reverse" if alternative.token_id == score.token_id else ""
        table.add_row(Text(visible(alternative.text), style=style), f"{alternative.prob:6.1%}",
                      probability_bar(alternative.prob))
    return Group(header, table)


def render_totals(totals: dict, label: str = "") -> Text:
    title = f"{label}: " if label else ""
    return Text(f"{title}{totals['scored_tokens']} tokens scored\nmean loss {totals['mean_loss']:.3f}\n"
                f"perplexity {totals['perplexity']:.1f}\n{totals['bits_per_byte']:.3f} bits/byte\n"
                f"{totals['windows']} window(s)")
