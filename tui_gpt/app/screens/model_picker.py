"""Choosing the model to prompt: a run's checkpoint, local GPT-2 weights, a fresh preset, or a file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widget import Widget
from textual.widgets.option_list import Option

from tui_gpt.app import bindings
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.services.model_catalog import ModelChoice, available_choices

if TYPE_CHECKING:
    from tui_gpt.app.services.engine_session import EngineSession

_SECTIONS = (("run", "Trained runs"), ("pretrained", "GPT-2 weights found locally"), ("fresh", "Fresh, untrained"))


class ModelPicker(ModalScreen[ModelChoice | None]):
    BINDINGS = bindings.MODEL_PICKER

    def __init__(self, choices: list[ModelChoice], current: ModelChoice | None,
                 question: str = "Choose the model to prompt") -> None:
        super().__init__(classes="dialog-screen")
        self.choices = choices
        self.current = current
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="model-picker"):
            yield Static(self.question, classes="dialog-question")
            options: list[Option | None] = []
            for kind, title in _SECTIONS:
                section = [c for c in self.choices if c.kind == kind]
                if not section:
                    continue
                if options:
                    options.append(None)
                options.append(Option(title, disabled=True))
                options += [Option(f"  {choice.label}", id=str(self.choices.index(choice))) for choice in section]
            yield OptionList(*options, id="model-options", compact=True)
            yield Input(placeholder="…or a checkpoint folder or weights file, then Enter", id="model-path",
                        compact=True)
        yield Footer()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.focus()
        index = self.choices.index(self.current) if self.current in self.choices else 0
        for position in range(options.option_count):
            if options.get_option_at_index(position).id == str(index):
                options.highlighted = position
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id)])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if not path.exists():
            self.notify(f"{text} does not exist", title="Model", severity="error")
            return
        self.dismiss(ModelChoice("file", str(path.resolve())))

    def action_cancel(self) -> None:
        self.dismiss(None)


def pick_model(widget: Widget, session: EngineSession | None, current: ModelChoice | None,
               then: Callable[[ModelChoice], None], question: str = "Choose the model to prompt") -> None:
    """Offer every model (runs, local GPT-2, presets) in the picker; `then` gets the one chosen, if any."""
    if session is None:
        widget.notify("The engine is still loading.", title="Model", severity="warning")
        return
    try:
        choices = available_choices(session.store.list())
    except Exception as exc:  # an unreadable data dir or model cache
        widget.notify(describe_error(exc), title="Model", severity="error")
        return
    widget.app.push_screen(ModelPicker(choices, current, question), lambda c: then(c) if c is not None else None)
