"""Asking for a text file's path: Enter opens it, Esc cancels."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from tui_gpt.app import bindings


class OpenFileScreen(ModalScreen[Path | None]):
    BINDINGS = bindings.OPEN_FILE

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog-screen")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-question")
            yield Input(placeholder="path of a UTF-8 text file, then Enter", id="file-path", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if not path.is_file():
            self.notify(f"{text}: no such file", title="Open", severity="error")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
