"""The side panel's attention views: one token's attention per head, and the layers x heads overview."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from tui_gpt.app.panes.prompt.token_inspector import visible

_SHADES = " ▁▂▃▄▅▆▇█"
STRIP_KEYS = 12  # the most recent keys a strip shows (fits the side panel at 80 columns)
_LOOKS_AT_MARK = {"previous": "←", "first": "⇤", "self": "•", "spread": "~"}


def shade(weight: float) -> str:
    return _SHADES[round(max(0.0, min(1.0, weight)) * (len(_SHADES) - 1))]


def render_token_attention(maps, position: int) -> RenderableType:
    """For the query at `position`: a strip per head over the last STRIP_KEYS tokens, and its top key."""
    if position >= len(maps.ids):
        return Text(f"Token #{position + 1} is beyond the first {len(maps.ids)} tokens (the context window) "
                    "whose attention is shown.", style="dim")
    first_key = max(0, position + 1 - STRIP_KEYS)
    header = Text.assemble("Attention of ", (visible(maps.tokens[position]), "bold"), f" (#{position + 1})\n",
                           (f"#{first_key + 1}..#{position + 1}, newest right;\nfull block: the head's largest weight", "dim"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ellipsis", max_width=8)
    layers, heads = maps.weights.shape[:2]
    for layer in range(layers):
        for head in range(heads):
            row = maps.weights[layer, head, position, : position + 1]
            top = int(row.argmax())
            strip = "".join(shade(w / float(row[top])) for w in row[first_key:].tolist())
            grid.add_row(f"L{layer + 1}H{head + 1}", Text(strip, style="cyan"), visible(maps.tokens[top]))
    return Group(header, grid)


def render_overview(maps) -> RenderableType:
    """Layers x heads: each head's entropy (shade: darker is sharper) and where it mostly looks."""
    summaries = maps.summaries()
    layers, heads = maps.weights.shape[:2]
    max_entropy = max((s.entropy for s in summaries), default=1.0) or 1.0
    # Two columns a head: gpt2-small's twelve heads fit the side panel at 80 columns.
    grid = Table(box=None, padding=(0, 0), show_header=True, header_style="dim")
    grid.add_column("", style="dim", justify="right")
    for head in range(heads):
        grid.add_column(str(head + 1), justify="center", min_width=2)
    for layer in range(layers):
        cells = []
        for s in summaries[layer * heads:(layer + 1) * heads]:
            cells.append(Text(f"{_LOOKS_AT_MARK[s.looks_at]}{shade(1 - s.entropy / max_entropy)}"))
        grid.add_row(f"L{layer + 1} ", *cells)
    key = Text("← previous  ⇤ first  • self  ~ spread\nthe fuller the block, the sharper the head", style="dim")
    title = Text(f"Layers x heads ({len(maps.ids)} tokens{', truncated' if maps.truncated else ''})")
    return Group(title, grid, key)
