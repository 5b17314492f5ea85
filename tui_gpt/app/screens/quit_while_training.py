"""Quitting while runs train: stop them (each saves a checkpoint) or leave them running."""

from __future__ import annotations

from typing import Literal

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static

from tui_gpt.app import bindings

Choice = Literal["stop", "leave"]


class QuitWhileTrainingScreen(ModalScreen[Choice | None]):
    BINDINGS = bindings.QUIT_WHILE_TRAINING

    def __init__(self, runs: list[str]) -> None:
        super().__init__(classes="dialog-screen")
        self.runs = runs

    def compose(self) -> ComposeResult:
        names = ", ".join(sorted(self.runs))
        with Vertical(classes="dialog"):
            yield Static(f"Still training: {names}", classes="dialog-question")
            yield Static("Stop saves a checkpoint to resume from later. Left running, training goes on "
                         "in the background and the app follows it again when you reopen it.",
                         classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop and quit (s)", variant="error", id="stop", compact=True)
                yield Button("Leave running (l)", variant="primary", id="leave", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: Choice | None) -> None:
        self.dismiss(choice)
