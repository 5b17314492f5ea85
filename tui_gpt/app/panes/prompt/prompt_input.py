"""The prompt editor: Enter generates, Shift+Enter (or Ctrl+J) starts a new line."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui_gpt.app import bindings


class PromptInput(TextArea):
    BINDINGS = bindings.PROMPT_INPUT

    class Submitted(Message):
        def __init__(self, prompt_input: "PromptInput", text: str) -> None:
            super().__init__()
            self.prompt_input = prompt_input
            self.text = text

        @property
        def control(self) -> "PromptInput":
            return self.prompt_input

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus", compact=True)
        self.placeholder = "Type a prompt and press Enter"

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()  # a binding, not a newline (TextArea inserts one otherwise)

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        start, end = self.selection
        self.replace("\n", start, end, maintain_selection_offset=False)  # the cursor goes past it
