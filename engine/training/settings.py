"""Training settings, their validation, and named recipes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from engine.model.config import PRESETS
from engine.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    # What to train: a preset, optionally changed field by field (e.g. context_length,
    # drop_rate), or weights to start from (a GPT-2 name or a path).
    preset: str = "gpt-nano"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    # On what: a file or folder of text; None is the built-in demo corpus.
    corpus: str | None = None
    train_ratio: float = 0.9
    # How.
    batch_size: int = 8
    stride: int | None = None  # None: the context length (non-overlapping windows)
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps in all
    grad_accum_steps: int = 1
    lr: float = 4e-4
    min_lr: float | None = None  # floor of the cosine decay; None: no decay
    weight_decay: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    eval_freq: int = 5
    eval_iter: int = 5
    start_context: str = "Every effort moves you"
    sample_tokens: int = 50
    sample_at_eval: bool = True  # a sample at every evaluation too, not only at each epoch's end
    seed: int = 123
    device: str = "auto"
    precision: str = "auto"  # bf16 autocast where the GPU or the CPU runs bf16 natively
    compile: bool = False  # torch.compile the model for training steps (engine.fast.compiled)
    # Checkpoints are saved on stop and at the finish, and also every
    # `checkpoint_every` steps and every `checkpoint_minutes` of training.
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = 10.0
    keep_last: int = 3

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        positive = ("batch_size", "epochs", "grad_accum_steps", "eval_freq", "eval_iter", "keep_last")
        for name in positive:
            _require_int(name, getattr(self, name), minimum=1)
        for name in ("stride", "max_steps", "checkpoint_every"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name), minimum=1)
        _require_int("warmup_steps", self.warmup_steps, minimum=0)
        _require_int("sample_tokens", self.sample_tokens, minimum=0)
        _require_int("seed", self.seed, minimum=0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"training field 'lr' must be a positive number, got {self.lr!r}")
        if self.min_lr is not None and not (0 <= self.min_lr <= self.lr):
            raise ConfigError(f"training field 'min_lr' must be between 0 and lr ({self.lr}), got {self.min_lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"training field 'weight_decay' must be >= 0, got {self.weight_decay!r}")
        if self.checkpoint_minutes is not None and not self.checkpoint_minutes > 0:
            raise ConfigError(f"training field 'checkpoint_minutes' must be positive, got {self.checkpoint_minutes!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"training field 'grad_clip' must be positive, got {self.grad_clip!r}")
        if not 0.0 < self.train_ratio < 1.0:
            raise ConfigError(f"training field 'train_ratio' must be between 0 and 1, got {self.train_ratio!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"training field 'device' must be one of {', '.join(DEVICES)} or cuda:N, got {self.device!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"training field 'compile' must be true or false, got {self.compile!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training field 'precision' must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_overrides"] = dict(self.model_overrides)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training field {unknown[0]!r}")
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        return replace(self, **overrides)


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"training field {name!r} must be an integer >= {minimum}, got {value!r}")


RECIPES: dict[str, TrainConfig] = {
    # The book's chapter 5 run (train_model_simple on the-verdict.txt); the corpus
    # is the user's copy of the-verdict.txt, which tui-gpt does not ship.
    "book": TrainConfig(
        preset="gpt2-small",
        model_overrides={"context_length": 256, "drop_rate": 0.1},
        batch_size=2,
        stride=256,
        epochs=10,
        lr=4e-4,
        weight_decay=0.1,
        eval_freq=5,
        eval_iter=5,
        start_context="Every effort moves you",
        sample_tokens=50,
        sample_at_eval=False,  # the book samples once per epoch
        seed=123,
        precision="fp32",  # the book's numbers, on every machine
    ),
}


def get_recipe(name: str) -> TrainConfig:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
