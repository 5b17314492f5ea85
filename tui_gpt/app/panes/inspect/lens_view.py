"""The side panel's logit-lens view: the top next tokens after each layer, at the selected token."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_gpt.app.panes.prompt.token_inspector import probability_bar, visible


def render_lens(table, top: int = 3) -> RenderableType:
    """`table` is an engine.insight.logit_lens.LensTable; `top` candidates per layer are shown."""
    header = Text.assemble("Logit lens after ", (visible(table.token), "bold"), f" (#{table.position + 1})\n",
                           ("next token read out after each layer", "dim"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="dim")
    grid.add_column(no_wrap=True, overflow="ellipsis", max_width=12)
    grid.add_column(justify="right")
    grid.add_column()
    for layer, row in enumerate(table.rows, start=1):
        for rank, alternative in enumerate(row[:top]):
            grid.add_row(f"L{layer}" if rank == 0 else "", Text(visible(alternative.text), style="bold" if rank == 0
                                                                  else ""),
                         f"{alternative.prob:5.1%}", probability_bar(alternative.prob, 6))
    return Group(header, grid)
