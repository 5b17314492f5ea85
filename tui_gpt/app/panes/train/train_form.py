"""The settings of a new training run: corpus, model (preset or recipe), run name, and every training setting.

The corpus field takes any source `--corpus` does; the data sets already
prepared in the cache are offered under it (and completed as it is typed),
each as the source it was prepared from, so a run on one starts at once.

The settings' fields are made from the engine's declaration (engine.training.settings.SETTINGS)
once the engine is loaded: the most used at the top, the others under "More settings".
An empty field means the default of the chosen preset or recipe, which the field shows
greyed; only what the person gave goes on the `tui-gpt train` command line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Collapsible, Input, Label, Select

from tui_gpt.app.services.prepared_corpora import PreparedCorpus
from tui_gpt.app.services.training_process import TrainingRequest

FIRST_RUN_RECIPE = "demo"
# Settings with a field of their own among the first rows (the model's select also offers recipes).
_OWN_FIELDS = {"corpus": "train-corpus", "preset": "train-model"}
_INPUT_TYPES = {int: "integer", float: "number", str: "text"}


class FormError(ValueError):
    """A field that cannot be used; the message names it."""


def _row(label: str, widget) -> Horizontal:
    return Horizontal(Label(label, classes="field-label"), widget, classes="field")


def _widget(declared, default: str) -> Input | Select:
    """The field for one declared setting, showing its default: a choice for yes/no and fixed choices, else text."""
    field_id = f"train-{declared.name}"
    if declared.kind is bool:
        return Select([("yes", True), ("no", False)], prompt=default, id=field_id, compact=True, allow_blank=True)
    if declared.choices:
        return Select([(choice, choice) for choice in declared.choices], prompt=default, id=field_id, compact=True,
                      allow_blank=True)
    return Input(placeholder=default, type=_INPUT_TYPES[declared.kind], id=field_id, compact=True,
                 select_on_focus=True)


class TrainForm(VerticalScroll):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "New run"
        self._presets: dict[str, Any] = {}
        self._recipes: dict[str, Any] = {}
        self._defaults: Any = None
        self._settings: tuple = ()  # the declared settings that have a field made from the declaration

    def compose(self) -> ComposeResult:
        yield _row("Corpus", Input(placeholder="demo corpus, a path or hf:NAME", id="train-corpus",
                                   compact=True))
        yield _row("Model", Select([], prompt="loading…", id="train-model", compact=True, allow_blank=True))
        yield _row("Run name", Input(placeholder="made up", id="train-run", compact=True))
        yield Vertical(id="train-settings")

    def engine_ready(self, presets: dict[str, Any], recipes: dict[str, Any], defaults: Any,
                     settings: tuple) -> None:
        self._presets, self._recipes, self._defaults = presets, recipes, defaults
        self._settings = tuple(s for s in settings if s.name not in _OWN_FIELDS)
        rows = {s.name: _row(s.label, _widget(s, self._default_of(defaults, s))) for s in self._settings}
        basic = [rows[s.name] for s in self._settings if s.basic]
        more = [rows[s.name] for s in self._settings if not s.basic]
        self.query_one("#train-settings", Vertical).mount(
            *basic, Collapsible(*more, title="More settings", collapsed=True, id="train-more"))
        options = [(name, f"preset:{name}") for name in presets]
        options += [(f"{name} recipe", f"recipe:{name}") for name in recipes]
        select = self.query_one("#train-model", Select)
        select.set_options(options)
        # A first run should visibly learn: the demo recipe turns gibberish into the corpus's words in minutes.
        select.value = f"recipe:{FIRST_RUN_RECIPE}" if FIRST_RUN_RECIPE in recipes else f"preset:{defaults.preset}"

    def offer_prepared(self, corpora: list[PreparedCorpus]) -> None:
        """Offer these prepared data sets: as a choice under the corpus field, which shows once there are
        any, and as the field's completions."""
        corpus = self.query_one("#train-corpus", Input)
        corpus.suggester = SuggestFromList([c.source for c in corpora]) if corpora else None
        options = [(c.label, c.source) for c in corpora]
        shown = self.query("#train-prepared")
        if shown:
            choice = shown.first(Select)
            picked = choice.value
            choice.set_options(options)
            if picked == corpus.value and any(source == picked for _, source in options):
                choice.value = picked  # still what the corpus field holds: keep showing it as picked
        elif options:
            choice = Select(options, prompt="pick one to train on", id="train-prepared", compact=True,
                            allow_blank=True)
            self.mount(_row("Prepared", choice), after=corpus.parent)

    def field_of(self, name: str) -> Input | Select:
        """The field where setting `name` is given."""
        return self.query_one(f"#{_OWN_FIELDS.get(name, f'train-{name}')}")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "train-model":
            self._show_defaults()
        elif event.select.id == "train-prepared" and event.value is not Select.NULL:
            self.query_one("#train-corpus", Input).value = str(event.value)

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
        for declared in self._settings:
            # Fields still being mounted (under "More settings") were made showing the defaults.
            for widget in self.query(f"#train-{declared.name}"):
                if isinstance(widget, Select):
                    widget.prompt = self._default_of(config, declared)
                else:
                    widget.placeholder = self._default_of(config, declared)

    def _default_of(self, config: Any, declared) -> str:
        """How a field shows the value `config` gives its setting when the field is left empty."""
        if declared.model:
            value = config.model_overrides.get(declared.name, getattr(self._presets[config.preset], declared.name))
        else:
            value = getattr(config, declared.name)
        if value is None:
            return "none"
        if declared.kind is bool:
            return "yes" if value else "no"
        return f"{value:g}" if declared.kind in (int, float) else str(value)

    def read(self) -> TrainingRequest:
        """The request the fields describe (run name "" when left to be made up); FormError if invalid."""
        model = str(self.query_one("#train-model", Select).value)
        kind, _, name = model.partition(":")
        if kind not in ("preset", "recipe"):
            raise FormError("the engine is still loading: choose a model in a moment")
        values: dict[str, Any] = {"preset": name} if kind == "preset" else {}
        corpus = self.query_one("#train-corpus", Input).value.strip()
        if corpus and not corpus.startswith("hf:"):  # hf:NAME names a cached dataset, not a path
            path = Path(corpus).expanduser()
            if not path.exists():
                raise FormError(f"corpus {corpus} does not exist")
            values["corpus"] = str(path.resolve())  # the trainer runs elsewhere: give it the full path
        for declared in self._settings:
            widget = self.field_of(declared.name)
            if isinstance(widget, Select):
                if widget.value is not Select.NULL:
                    values[declared.name] = widget.value
            elif text := widget.value.strip():
                values[declared.name] = declared.from_text(text)  # a ConfigError names the field's label
        return TrainingRequest(
            run=self.query_one("#train-run", Input).value.strip(),
            recipe=name if kind == "recipe" else None,
            settings=values,
        )

    def run_name_prefix(self) -> str:
        return str(self.query_one("#train-model", Select).value).partition(":")[2] or "run"
