"""The settings of a new training run: corpus, model (preset or recipe) and main hyperparameters.

An empty field means the trainer's default for the chosen preset or recipe,
which the field shows as its placeholder; only what the person typed goes on
the `tui-gpt train` command line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select

from tui_gpt.app.services.training_process import TrainingRequest

# (TrainingRequest field, label, input type)
_NUMBERS = (
    ("epochs", "Epochs", "integer"),
    ("max_steps", "Max steps", "integer"),
    ("batch_size", "Batch size", "integer"),
    ("context_length", "Context", "integer"),
    ("lr", "Learning rate", "number"),
    ("eval_freq", "Eval every", "integer"),
    ("eval_iter", "Eval batches", "integer"),
    ("seed", "Seed", "integer"),
    ("sample_tokens", "Sample tokens", "integer"),
)
_MINIMUM = {"seed": 0, "sample_tokens": 0}  # other counts must be at least 1; lr above 0


class FormError(ValueError):
    """A field that cannot be used; the message names it."""


def _row(label: str, widget) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), widget, classes="field")


class TrainForm(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "New run"
        self._presets: dict[str, Any] = {}
        self._recipes: dict[str, Any] = {}
        self._defaults: Any = None

    def compose(self) -> ComposeResult:
        yield _row("Corpus", Input(placeholder="demo corpus, or a .txt file / folder", id="train-corpus",
                                   compact=True))
        yield _row("Model", Select([], prompt="loading…", id="train-model", compact=True, allow_blank=True))
        yield _row("Run name", Input(placeholder="made up", id="train-run", compact=True))
        for name, label, kind in _NUMBERS:
            yield _row(label, Input(type=kind, id=f"train-{name}", compact=True, select_on_focus=True))

    def engine_ready(self, presets: dict[str, Any], recipes: dict[str, Any], defaults: Any) -> None:
        self._presets, self._recipes, self._defaults = presets, recipes, defaults
        options = [(name, f"preset:{name}") for name in presets]
        options += [(f"{name} recipe", f"recipe:{name}") for name in recipes]
        select = self.query_one("#train-model", Select)
        select.set_options(options)
        select.value = f"preset:{defaults.preset}"

    def on_select_changed(self, event: Select.Changed) -> None:
        self._show_defaults()

    def _base_config(self) -> Any:
        """The TrainConfig the chosen model starts from, before the form's fields."""
        kind, _, name = str(self.query_one("#train-model", Select).value).partition(":")
        if kind == "recipe":
            return self._recipes[name]
        if kind == "preset":
            return replace(self._defaults, preset=name)
        return None

    def _show_defaults(self) -> None:
        config = self._base_config()
        if config is None:
            return
        for name, _, _ in _NUMBERS:
            if name == "context_length":
                value = config.model_overrides.get("context_length",
                                                   self._presets[config.preset].context_length)
            else:
                value = getattr(config, name)
            self.query_one(f"#train-{name}", Input).placeholder = "none" if value is None else f"{value:g}"

    def read(self) -> TrainingRequest:
        """The request the fields describe (run name "" when left to be made up); FormError if invalid."""
        model = str(self.query_one("#train-model", Select).value)
        kind, _, name = model.partition(":")
        if kind not in ("preset", "recipe"):
            raise FormError("the engine is still loading: choose a model in a moment")
        corpus = self.query_one("#train-corpus", Input).value.strip() or None
        if corpus is not None and not corpus.startswith("hf:"):  # hf:NAME names a cached dataset, not a path
            path = Path(corpus).expanduser()
            if not path.exists():
                raise FormError(f"corpus {corpus} does not exist")
            corpus = str(path.resolve())  # the trainer runs elsewhere: give it the full path
        values: dict[str, Any] = {}
        for field, label, kind_of_input in _NUMBERS:
            text = self.query_one(f"#train-{field}", Input).value.strip()
            if not text:
                continue
            try:
                value = int(text) if kind_of_input == "integer" else float(text)
            except ValueError:
                raise FormError(f"{label.lower()} must be a number, got {text!r}") from None
            minimum = _MINIMUM.get(field, 1)
            if field == "lr" and value <= 0:
                raise FormError(f"{label.lower()} must be above 0, got {text}")
            if field != "lr" and value < minimum:
                raise FormError(f"{label.lower()} must be at least {minimum}, got {text}")
            values[field] = value
        return TrainingRequest(
            run=self.query_one("#train-run", Input).value.strip(),
            preset=name if kind == "preset" else None,
            recipe=name if kind == "recipe" else None,
            corpus=corpus,
            **values,
        )

    def run_name_prefix(self) -> str:
        return str(self.query_one("#train-model", Select).value).partition(":")[2] or "run"
