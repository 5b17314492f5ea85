"""The training settings' one declaration: TrainConfig's fields, their bounds, and resuming with them."""

from __future__ import annotations

from dataclasses import fields

import pytest

from engine.errors import ConfigError
from engine.training.settings import SETTINGS, TrainConfig, resumed_config


def test_every_training_field_is_a_declared_setting():
    declared = {s.name for s in SETTINGS if not s.model}
    assert declared == {f.name for f in fields(TrainConfig)} - {"model_overrides"}


def test_flags_and_labels_are_unique():
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    assert len({s.label for s in SETTINGS}) == len(SETTINGS)


def just_outside(declared):
    """A value the declared bounds refuse, or None when they allow every value of the kind."""
    if declared.choices:
        return "nowhere"
    if declared.below is not None:
        return declared.below
    if declared.minimum is not None:
        return declared.minimum if declared.above_minimum else declared.minimum - 1
    return None


@pytest.mark.parametrize("declared", [s for s in SETTINGS if not s.model and just_outside(s) is not None],
                         ids=lambda s: s.name)
def test_training_config_refuses_values_outside_the_declared_bounds(declared):
    with pytest.raises(ConfigError, match=f"'{declared.name}' must be {declared.requirement()}"):
        TrainConfig(**{declared.name: just_outside(declared)})


@pytest.mark.parametrize("declared", [s for s in SETTINGS if not s.model], ids=lambda s: s.name)
def test_training_config_refuses_values_of_another_kind(declared):
    wrong = ["a list"] if declared.kind is str else "text"
    with pytest.raises(ConfigError, match=f"'{declared.name}'"):
        TrainConfig(**{declared.name: wrong})


def test_a_model_setting_goes_to_the_model_overrides():
    config = TrainConfig(model_overrides={"drop_rate": 0.1}).with_settings({"context_length": 64, "lr": 1e-3})
    assert config.model_overrides == {"drop_rate": 0.1, "context_length": 64} and config.lr == 1e-3


STORED = {"train": TrainConfig(preset="gpt-nano", max_steps=6).to_dict(), "model": {"context_length": 32}}


def test_resuming_accepts_the_run_s_own_values_and_changes_the_rest():
    config = resumed_config(STORED, {"preset": "gpt-nano", "context_length": 32, "init_from": None, "max_steps": 12})
    assert config.max_steps == 12 and config.preset == "gpt-nano"


@pytest.mark.parametrize("changes, message", [
    ({"preset": "gpt-micro"}, "--preset cannot be changed when resuming: the run has gpt-nano, not gpt-micro"),
    ({"context_length": 64}, "--context-length cannot be changed when resuming: the run has 32, not 64"),
    ({"init_from": "gpt2"}, "--init-from cannot be changed when resuming: the run has None, not gpt2"),
])
def test_resuming_refuses_a_change_of_model_naming_both_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        resumed_config(STORED, changes)
