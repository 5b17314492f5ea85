"""The training form: a field for every declared training setting, read into the command that starts a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Select

from engine.model.config import PRESETS
from engine.training.settings import RECIPES, SETTINGS, TrainConfig
from tui_gpt.app.panes.train.train_form import TrainForm
from tui_gpt.app.services.training_process import train_command
from tui_gpt.cli.main import build_parser


class FormHost(App):
    def compose(self) -> ComposeResult:
        yield TrainForm(id="train-form")

    def on_mount(self) -> None:
        self.query_one(TrainForm).engine_ready(dict(PRESETS), dict(RECIPES), TrainConfig(), SETTINGS)


def value_to_give(declared, corpus: Path):
    """A valid value of the setting, other than its default."""
    if declared.name == "corpus":
        return str(corpus)
    if declared.name == "preset":
        return "gpt-micro"
    if declared.kind is bool:
        return not getattr(TrainConfig(), declared.name)
    if declared.choices:
        return declared.choices[-1]
    if declared.kind is str:
        return "some text"
    if declared.kind is float:
        return 0.25 if declared.below is None else declared.below / 4
    return int(declared.minimum or 0) + 2


def give(form: TrainForm, declared, value) -> None:
    field = form.field_of(declared.name)
    if isinstance(field, Select):
        field.value = f"preset:{value}" if declared.name == "preset" else value
    else:
        field.value = str(value)


async def test_every_declared_setting_is_a_form_field_a_cli_flag_and_a_process_argument(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("text", encoding="utf-8")
    app = FormHost()
    async with app.run_test(size=(80, 60)) as pilot:
        await pilot.pause()
        form = app.query_one(TrainForm)
        wanted = {declared.name: value_to_give(declared, corpus) for declared in SETTINGS}
        for declared in SETTINGS:
            give(form, declared, wanted[declared.name])
        request = form.read()
    assert dict(request.settings) == wanted
    command = train_command(tmp_path, request)
    parsed = vars(build_parser().parse_args(command[3:]))
    assert {name: parsed[name] for name in wanted} == wanted


async def test_empty_fields_are_left_to_the_defaults_which_they_show():
    app = FormHost()
    async with app.run_test(size=(80, 40)) as pilot:
        await pilot.pause()
        form = app.query_one(TrainForm)
        # A first run starts on the demo recipe: its own defaults show, and nothing is set.
        assert form.read().recipe == "demo" and form.read().settings == {}
        assert form.field_of("lr").placeholder == "0.003"
        form.field_of("preset").value = "preset:gpt-nano"
        await pilot.pause()
        assert form.read().settings == {"preset": "gpt-nano"}
        assert form.field_of("lr").placeholder == "0.0004"
        assert form.field_of("context_length").placeholder == str(PRESETS["gpt-nano"].context_length)
        assert form.field_of("sample_at_eval").prompt == "yes"
        form.field_of("preset").value = "recipe:book"
        await pilot.pause()
        assert form.field_of("sample_at_eval").prompt == "no"
        assert form.field_of("context_length").placeholder == "256"


@pytest.mark.parametrize("name, text, message", [("lr", "-1", "Learning rate must be a positive number"),
                                                 ("eval_freq", "0", "Eval every must be an integer >= 1"),
                                                 ("train_ratio", "1", "Train share must be a number between 0 and 1")])
async def test_values_out_of_the_declared_bounds_are_refused_naming_the_field(name, text, message):
    app = FormHost()
    async with app.run_test(size=(80, 40)) as pilot:
        await pilot.pause()
        form = app.query_one(TrainForm)
        form.field_of(name).value = text
        with pytest.raises(ValueError, match=message):
            form.read()
