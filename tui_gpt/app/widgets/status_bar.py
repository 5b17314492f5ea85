"""One line under the panes: the engine, the model being prompted and the run being followed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from tui_gpt.app.widgets.steady_update import update_steady


class StatusBar(Horizontal):
    def compose(self) -> ComposeResult:
        yield Static("loading engine…", id="status-engine")
        yield Static("", id="status-model")
        yield Static("", id="status-training")

    def show(self, part: str, text: str) -> None:
        """Set one part: "engine", "model" or "training"."""
        widget = self.query_one(f"#status-{part}", Static)
        update_steady(widget, text)
        widget.display = bool(text)
