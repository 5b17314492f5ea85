"""Model configuration: the book's config dict as a typed dataclass, plus named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from engine.errors import ConfigError

_SYNONYMS = {"dropout_rate": "drop_rate"}
# Far beyond any GPT-2 (xl: 48 layers of 1600, context 1024), yet small enough that a config
# read from an edited file cannot make the model's construction itself exhaust memory.
_LIMITS = {"vocab_size": 1 << 20, "context_length": 1 << 20, "emb_dim": 1 << 16, "n_heads": 1 << 10, "n_layers": 1 << 10}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    # GPT-2 as OpenAI released it shares the token embedding with the output head;
    # the book's model (and anything trained from scratch here) keeps them apart.
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
            if value > _LIMITS[name]:
                raise ConfigError(f"config field {name!r} is {value:,}, more than tui-gpt supports ({_LIMITS[name]:,})")
        if self.emb_dim % self.n_heads:
            raise ConfigError(
                f"config field 'emb_dim' ({self.emb_dim}) must be divisible by 'n_heads' ({self.n_heads})"
            )
        rate = self.drop_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ConfigError(f"config field 'drop_rate' must be in [0, 1), got {rate!r}")

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    def num_parameters(self) -> int:
        """Distinct parameters of the GPTModel this config builds (a tied head counts once), without torch."""
        e, layers = self.emb_dim, self.n_layers
        qkv_bias = 3 * e if self.qkv_bias else 0
        attention = 3 * e * e + qkv_bias + e * e + e  # query, key, value, then the output projection
        feed_forward = e * 4 * e + 4 * e + 4 * e * e + e
        norms = 2 * 2 * e
        head = 0 if self.tie_embeddings else self.vocab_size * e
        return (self.vocab_size + self.context_length) * e + layers * (attention + feed_forward + norms) + 2 * e + head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> "GPTConfig":
        return replace(self, **overrides)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = _SYNONYMS.get(key, key)
            if name not in known:
                raise ConfigError(f"unknown config field {key!r}")
            if name in values:
                raise ConfigError(f"config field {name!r} given twice (as {key!r} and a synonym)")
            values[name] = value
        return cls(**values)


def as_config(cfg: "GPTConfig | Mapping[str, Any]") -> GPTConfig:
    """Accept a GPTConfig or the book's plain dict."""
    if isinstance(cfg, GPTConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return GPTConfig.from_dict(cfg)
    raise ConfigError(f"a model config must be a GPTConfig or a dict, got {type(cfg).__name__}")


PRESETS: dict[str, GPTConfig] = {
    # Trains in minutes on a laptop CPU: most of its parameters are the embeddings.
    "gpt-nano": GPTConfig(context_length=128, emb_dim=128, n_heads=4, n_layers=2),
    "gpt-micro": GPTConfig(context_length=256, emb_dim=256, n_heads=8, n_layers=4),
    # The book's GPT_CONFIG_124M and OpenAI's larger sizes.
    "gpt2-small": GPTConfig(emb_dim=768, n_heads=12, n_layers=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_heads=16, n_layers=24),
    "gpt2-large": GPTConfig(emb_dim=1280, n_heads=20, n_layers=36),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_heads=25, n_layers=48),
}


def book_config_dict(preset: str) -> dict[str, Any]:
    """A preset as the book writes its config dicts (GPT_CONFIG_124M): no tie_embeddings key."""
    config = get_preset(preset).to_dict()
    del config["tie_embeddings"]
    return config


def get_preset(name: str) -> GPTConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
