"""The settings beside the prompt: which model, and how to sample from it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Static

from tui_gpt.app.services.generation_job import GenerationSettings

# (field, label, input type, placeholder, accepts empty)
_FIELDS = (
    ("max_new_tokens", "Max tokens", "integer", "50", False),
    ("temperature", "Temperature", "number", "0 = greedy", False),
    ("top_k", "Top-k", "integer", "off", True),
    ("top_p", "Top-p", "number", "off", True),
    ("seed", "Seed", "integer", "random", True),
)


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


def parse_settings(values: dict[str, str]) -> GenerationSettings:
    """Settings from the inputs' text; SettingsError naming the first bad one."""

    def number(name: str, kind: type, minimum: float, maximum: float | None = None):
        text = values.get(name, "").strip()
        if not text:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise SettingsError(f"{name.replace('_', ' ')} must be a number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(f"{name.replace('_', ' ')} must be {bounds}, got {text}")
        return value

    top_p = number("top_p", float, 0.0, 1.0)
    if top_p == 0.0:
        raise SettingsError("top p must be above 0 (leave it empty to turn it off)")
    max_new_tokens = number("max_new_tokens", int, 1, 100_000)
    temperature = number("temperature", float, 0.0, 10.0)
    return GenerationSettings(
        max_new_tokens=GenerationSettings.max_new_tokens if max_new_tokens is None else max_new_tokens,
        temperature=GenerationSettings.temperature if temperature is None else temperature,
        top_k=number("top_k", int, 1),
        top_p=top_p,
        seed=number("seed", int, 0, 2**63 - 1),
    )


def _as_text(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


class GenerationSettingsPanel(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Settings"

    def compose(self) -> ComposeResult:
        yield Label("Model", classes="setting-title")
        yield Static("loading…", id="model-label")
        for name, label, kind, placeholder, _ in _FIELDS:
            with Horizontal(classes="setting"):
                yield Label(label, classes="setting-label")
                yield Input(placeholder=placeholder, type=kind, id=f"setting-{name}", compact=True,
                            select_on_focus=True)

    def show_model(self, text: str) -> None:
        self.query_one("#model-label", Static).update(text)

    def load(self, settings: GenerationSettings) -> None:
        for name, *_ in _FIELDS:
            self.query_one(f"#setting-{name}", Input).value = _as_text(getattr(settings, name))

    def read(self) -> GenerationSettings:
        return parse_settings({name: self.query_one(f"#setting-{name}", Input).value for name, *_ in _FIELDS})
