"""Updating a Static without laying out the whole screen again unless its size must change.

`Static.update` re-lays out the screen by default, which costs a full redraw:
done at every token batch or every poll of a training run, that redraw
competes with generation and training for the CPU. Most updates keep the
widget's size (the same number of lines), and then repainting it is enough.
"""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


def update_steady(widget: Static, content: VisualType) -> None:
    if content == widget.content:
        return  # a poll that found nothing new: not even a repaint
    if not widget.size:  # never laid out yet
        widget.update(content)
        return
    widget.update(content, layout=False)
    region = widget.content_region
    container, viewport = widget.size, widget.app.size
    styles = widget.styles
    wider = styles.width is not None and styles.width.is_auto and (
        widget.get_content_width(container, viewport) != region.width)
    taller = styles.height is not None and styles.height.is_auto and (
        widget.get_content_height(container, viewport, region.width) != region.height)
    if wider or taller:
        widget.refresh(layout=True)
