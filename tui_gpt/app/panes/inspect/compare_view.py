"""The side panel's comparison view: two models' totals on the text and the tokens that changed most."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_gpt.app.panes.prompt.token_inspector import visible

LISTED = 5


def render_comparison(comparison, label_a: str, label_b: str) -> RenderableType:
    a, b = comparison.a, comparison.b
    header = Text.assemble(
        ("A ", "bold"), label_a, f"\n  loss {a.mean_loss:.3f}  ppl {a.perplexity:.1f}\n",
        ("B ", "bold"), label_b, f"\n  loss {b.mean_loss:.3f}  ppl {b.perplexity:.1f}\n",
        f"B - A: {comparison.mean_delta:+.3f} nats/token\n",
    )
    parts: list[RenderableType] = [header]
    for title, diffs in (("Most improved in B", comparison.most_improved(LISTED)),
                         ("Most worsened in B", comparison.most_worsened(LISTED))):
        parts.append(Text(title, style="underline"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, overflow="ellipsis", max_width=12)
        grid.add_column(justify="right")
        for d in diffs:
            grid.add_row(visible(d.text), Text(f"{d.delta:+.2f}", style="green" if d.delta < 0 else "red"))
        parts.append(grid if diffs else Text("  none", style="dim"))
    return Group(*parts)
