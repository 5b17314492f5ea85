"""GPTConfig: validation with field-naming errors, the book's dict form, presets."""

from __future__ import annotations

import pytest

from engine.model.config import PRESETS, GPTConfig, as_config, get_preset
from engine.errors import ConfigError, TuiGptError
from engine.model.gpt import GPTModel

# The book's GPT_CONFIG_124M, written the way chapter 4 writes it.
BOOK_GPT_CONFIG_124M = {
    "vocab_size": 50257,
    "context_length": 1024,
    "emb_dim": 768,
    "n_heads": 12,
    "n_layers": 12,
    "drop_rate": 0.1,
    "qkv_bias": False,
}


def _book_param_count(cfg: GPTConfig) -> int:
    """Parameters of the book's GPTModel, counted layer by layer from its architecture."""
    d, v, t = cfg.emb_dim, cfg.vocab_size, cfg.context_length
    qkv = 3 * (d * d + (d if cfg.qkv_bias else 0))
    out_proj = d * d + d
    feed_forward = (d * 4 * d + 4 * d) + (4 * d * d + d)
    norms = 2 * 2 * d
    block = qkv + out_proj + feed_forward + norms
    head = 0 if cfg.tie_embeddings else v * d
    return v * d + t * d + cfg.n_layers * block + 2 * d + head


def test_book_dict_converts_to_the_small_preset():
    assert GPTConfig.from_dict(BOOK_GPT_CONFIG_124M) == PRESETS["gpt2-small"]
    assert as_config(BOOK_GPT_CONFIG_124M) == PRESETS["gpt2-small"]


def test_dropout_rate_is_a_synonym_of_drop_rate():
    data = {k: v for k, v in BOOK_GPT_CONFIG_124M.items() if k != "drop_rate"}
    data["dropout_rate"] = 0.25
    assert GPTConfig.from_dict(data) == PRESETS["gpt2-small"].with_overrides(drop_rate=0.25)


def test_drop_rate_given_twice_through_its_synonym_is_rejected():
    with pytest.raises(ConfigError, match="drop_rate"):
        GPTConfig.from_dict({**BOOK_GPT_CONFIG_124M, "dropout_rate": 0.1})


def test_to_dict_round_trips():
    cfg = GPTConfig(context_length=64, emb_dim=48, n_heads=3, n_layers=1, qkv_bias=True, tie_embeddings=True)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_dict_config_builds_the_same_model_as_the_dataclass(tiny_config):
    assert GPTModel(tiny_config.to_dict()).cfg == tiny_config


def test_config_errors_are_value_errors_shown_to_the_user():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, TuiGptError)


def test_emb_dim_not_divisible_by_n_heads_names_both_fields():
    with pytest.raises(ConfigError) as err:
        GPTConfig(emb_dim=100, n_heads=12)
    assert "emb_dim" in str(err.value) and "n_heads" in str(err.value)


@pytest.mark.parametrize("field", ["vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_size_is_rejected_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        GPTConfig.from_dict({field: value})


@pytest.mark.parametrize("value", [2.5, "12", True, None])
def test_non_integer_size_is_rejected_naming_the_field(value):
    with pytest.raises(ConfigError, match="n_layers"):
        GPTConfig(n_layers=value)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.1"])
def test_drop_rate_outside_zero_to_one_is_rejected(rate):
    with pytest.raises(ConfigError, match="drop_rate"):
        GPTConfig(drop_rate=rate)


@pytest.mark.parametrize("rate", [0, 0.0, 0.1, 0.99])
def test_drop_rate_in_zero_to_one_is_accepted(rate):
    assert GPTConfig(drop_rate=rate).drop_rate == rate


def test_unknown_key_is_rejected_naming_it():
    with pytest.raises(ConfigError, match="n_embd"):
        GPTConfig.from_dict({**BOOK_GPT_CONFIG_124M, "n_embd": 768})


def test_error_messages_are_one_line():
    for bad in ({"emb_dim": 100}, {"n_heads": 0}, {"drop_rate": 2}, {"bogus": 1}):
        with pytest.raises(ConfigError) as err:
            GPTConfig.from_dict(bad)
        assert "\n" not in str(err.value)


def test_config_that_is_neither_dataclass_nor_dict_is_rejected():
    with pytest.raises(ConfigError, match="list"):
        as_config([768, 12])


def test_presets_include_the_book_and_openai_sizes():
    assert {"gpt-nano", "gpt-micro", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"} <= set(PRESETS)
    assert get_preset("gpt2-small") == GPTConfig.from_dict(BOOK_GPT_CONFIG_124M)
    medium, large, xl = (get_preset(n) for n in ("gpt2-medium", "gpt2-large", "gpt2-xl"))
    assert (medium.emb_dim, medium.n_heads, medium.n_layers) == (1024, 16, 24)
    assert (large.emb_dim, large.n_heads, large.n_layers) == (1280, 20, 36)
    assert (xl.emb_dim, xl.n_heads, xl.n_layers) == (1600, 25, 48)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="gpt2-small"):
        get_preset("gpt5")


def test_book_124m_parameter_count():
    # The book prints 163,009,536 for GPTModel with its separate output head.
    assert _book_param_count(PRESETS["gpt2-small"]) == 163_009_536
    # OpenAI's GPT-2 small (query/key/value biases, head shared with the embedding) is the famous 124M.
    openai = PRESETS["gpt2-small"].with_overrides(qkv_bias=True, tie_embeddings=True)
    assert _book_param_count(openai) == 124_439_808


@pytest.mark.parametrize("name", ["gpt-nano", "gpt-micro"])
def test_small_presets_build_with_the_expected_parameter_count(name):
    cfg = get_preset(name)
    model = GPTModel(cfg)
    assert model.num_parameters() == _book_param_count(cfg)


def test_tied_embeddings_count_once():
    cfg = GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1, tie_embeddings=True)
    model = GPTModel(cfg)
    assert model.out_head.weight is model.tok_emb.weight
    assert model.num_parameters() == _book_param_count(cfg)
