"""Training settings: each declared once, with what the command line and the app show of it.

A setting is a field of `TrainConfig` made with `setting(...)`: its default, its
flag, its label in the app's form, its help, and its bounds. `SETTINGS` lists
them all (plus the model's context length, kept in `model_overrides`);
`tui-gpt train`'s options, the app's form and the command line the app starts
a run with are all derived from it, and `TrainConfig` checks values against
the same bounds. Adding a setting is adding one field here.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from engine.model.config import PRESETS
from engine.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
# A sample is read on one screen; a longer one would hold up training at every evaluation.
MAX_SAMPLE_TOKENS = 2000
PRECISIONS = ("auto", "fp32", "bf16")

# Help sections of `tui-gpt train`, in order.
WHAT, SCHEDULE, EVALUATION, CHECKPOINTS = "what to train", "schedule", "evaluation and samples", "checkpoints and hardware"


@dataclass(frozen=True)
class Setting:
    """One training setting as the front ends show it; `name` and `kind` come from its TrainConfig field."""

    flag: str  # on the command line: --max-steps
    label: str  # in the app's form: "Max steps"
    help: str
    section: str
    metavar: str = "N"
    minimum: float | None = None
    above_minimum: bool = False  # the minimum itself is not allowed (a rate above 0)
    below: float | None = None  # an exclusive upper bound
    maximum: float | None = None  # an inclusive upper bound
    choices: tuple[str, ...] = ()
    also: tuple[str, str] | None = None  # (regex, how to write it): values accepted besides `choices`
    fixed_on_resume: bool = False  # decides the model, which a resumed run keeps
    basic: bool = False  # shown at the top of the app's form; the others are under "More settings"
    model: bool = False  # a field of the model's config, kept in TrainConfig.model_overrides
    name: str = ""
    kind: type = str  # int, float, str or bool
    optional: bool = False  # None allowed: "not set"

    def requirement(self) -> str:
        """What a valid value is, as the end of 'X must be ...'."""
        if self.choices:
            listed = [*self.choices, self.also[1]] if self.also else list(self.choices)
            return f"one of {', '.join(listed[:-1])} or {listed[-1]}"
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "text"
        noun = "an integer" if self.kind is int else "a number"
        g = (lambda x: str(int(x))) if self.kind is int else (lambda x: f"{x:g}")
        if self.minimum is not None and self.below is not None:
            return f"{noun} between {g(self.minimum)} and {g(self.below)}"
        if self.minimum is not None and self.maximum is not None:
            return f"{noun} from {g(self.minimum)} to {g(self.maximum)}"
        if self.minimum == 0 and self.above_minimum:
            return f"a positive {noun.split()[-1]}"
        if self.minimum is not None:
            return f"{noun} {'>' if self.above_minimum else '>='} {g(self.minimum)}"
        return noun

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            return isinstance(value, str) and (
                not self.choices or value in self.choices
                or bool(self.also and re.fullmatch(self.also[0], value)))
        if not isinstance(value, int if self.kind is int else (int, float)) or not math.isfinite(value):
            return False
        if self.minimum is not None and (value <= self.minimum if self.above_minimum else value < self.minimum):
            return False
        return (self.below is None or value < self.below) and (self.maximum is None or value <= self.maximum)

    def check(self, value: Any, name: str | None = None) -> None:
        """ConfigError naming the setting (by `name`, else its field) unless `value` is allowed."""
        if not self.accepts(value):
            raise ConfigError(f"{name or f'training field {self.name!r}'} must be {self.requirement()}, got {value!r}")

    def from_text(self, text: str) -> Any:
        """The value typed in the app's form, checked; ConfigError naming the label if it is not allowed."""
        try:
            value = {int: int, float: float}.get(self.kind, str)(text)
        except ValueError:
            value = text
        self.check(value, name=self.label)
        return value

    def as_args(self, value: Any) -> list[str]:
        """The command-line arguments that give this setting `value` (inverse of the parser's option)."""
        if self.kind is bool:
            return [self.flag if value else "--no-" + self.flag.removeprefix("--")]
        return [self.flag, str(value)]


def setting(default: Any, flag: str, label: str, help: str, section: str, **declared: Any) -> Any:
    """A TrainConfig field declared as a setting (see `Setting` for the rest of what can be declared)."""
    return field(default=default, metadata={"setting": Setting(flag, label, help, section, **declared)})


@dataclass(frozen=True)
class TrainConfig:
    # What to train: a preset (its own settings, such as the context length, are kept in
    # model_overrides), or weights to start from, on a file or folder of text.
    preset: str = setting("gpt-nano", "--preset", "Model", "model size: gpt-nano, gpt-micro, gpt2-small, gpt2-medium, ...",
                          WHAT, metavar="NAME", fixed_on_resume=True, basic=True)
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = setting(
        None, "--init-from", "Start from",
        "start from these weights: gpt2, gpt2-medium, ..., a Hugging Face folder, a .safetensors/.pth file or a checkpoint",
        WHAT, metavar="NAME|PATH", fixed_on_resume=True)
    corpus: str | None = setting(
        None, "--corpus", "Corpus",
        "text, .jsonl, .parquet (also .gz/.zst/.xz), nanoGPT/llm.c .bin tokens, a folder of them, "
        "hf:NAME[:CONFIG][:SPLIT] or a saved dataset (default: the built-in demo corpus)",
        WHAT, metavar="PATH", basic=True)
    # How to read it (engine/data/sources checks the format's name).
    corpus_format: str = setting("auto", "--corpus-format", "Corpus format",
                                 "auto (recognised by name and content), text, jsonl, parquet, tokens or hf",
                                 WHAT, metavar="FORMAT")
    text_field: str = setting("text", "--text-field", "Text field",
                              "the JSONL field or Parquet/dataset column with the text", WHAT, metavar="NAME")
    val_corpus: str | None = setting(None, "--val-corpus", "Val corpus",
                                     "validate on this instead of a seeded share of the corpus's documents",
                                     WHAT, metavar="PATH")
    train_ratio: float = setting(0.9, "--train-ratio", "Train share",
                                 "share of the corpus to train on; the rest is the validation split",
                                 WHAT, metavar="R", minimum=0, above_minimum=True, below=1)
    # How.
    epochs: int = setting(1, "--epochs", "Epochs", "passes over the training data", SCHEDULE, minimum=1, basic=True)
    max_steps: int | None = setting(None, "--max-steps", "Max steps", "stop after N optimizer steps in all",
                                    SCHEDULE, minimum=1, basic=True)
    batch_size: int = setting(8, "--batch-size", "Batch size", "sequences per micro-batch", SCHEDULE, minimum=1,
                              basic=True)
    stride: int | None = setting(None, "--stride", "Stride",
                                 "tokens from one training window to the next (default: the context length)",
                                 SCHEDULE, minimum=1)
    grad_accum_steps: int = setting(1, "--grad-accum", "Grad accum", "micro-batches per optimizer step", SCHEDULE,
                                    minimum=1)
    lr: float = setting(4e-4, "--lr", "Learning rate", "peak learning rate", SCHEDULE, metavar="LR", minimum=0,
                        above_minimum=True, basic=True)
    min_lr: float | None = setting(None, "--min-lr", "Min LR", "decay the learning rate along a cosine down to this",
                                   SCHEDULE, metavar="LR", minimum=0)
    weight_decay: float = setting(0.1, "--weight-decay", "Weight decay", "AdamW weight decay", SCHEDULE, metavar="W",
                                  minimum=0)
    warmup_steps: int = setting(0, "--warmup-steps", "Warmup steps", "linear learning-rate warmup steps", SCHEDULE,
                                minimum=0)
    grad_clip: float | None = setting(None, "--grad-clip", "Grad clip", "clip the gradient norm to this", SCHEDULE,
                                      metavar="NORM", minimum=0, above_minimum=True)
    seed: int = setting(123, "--seed", "Seed", "random seed (initial weights, data order, dropout)", SCHEDULE,
                        minimum=0, maximum=2**63 - 1, basic=True)  # torch's generators take a signed 64-bit seed
    eval_freq: int = setting(5, "--eval-freq", "Eval every", "evaluate every N steps", EVALUATION, minimum=1,
                             basic=True)
    eval_iter: int = setting(5, "--eval-iter", "Eval batches", "batches per evaluation", EVALUATION, minimum=1,
                             basic=True)
    start_context: str = setting("Every effort moves you", "--start-context", "Sample prompt",
                                 "prompt of the samples printed while training", EVALUATION, metavar="TEXT")
    sample_tokens: int = setting(50, "--sample-tokens", "Sample tokens", "tokens per sample (0: no samples)",
                                 EVALUATION, minimum=0, maximum=MAX_SAMPLE_TOKENS, basic=True)
    sample_at_eval: bool = setting(True, "--sample-at-eval", "Eval samples",
                                   "a sample at every evaluation, not only at each epoch's end", EVALUATION)
    # Checkpoints are saved on stop and at the finish, and also every
    # `checkpoint_every` steps and every `checkpoint_minutes` of training.
    checkpoint_every: int | None = setting(
        None, "--checkpoint-every", "Save every",
        "also save every N steps (a checkpoint is always saved when stopping and at the end)", CHECKPOINTS, minimum=1)
    checkpoint_minutes: float | None = setting(10.0, "--checkpoint-minutes", "Save minutes",
                                               "also save every M minutes of training", CHECKPOINTS, metavar="M",
                                               minimum=0, above_minimum=True)
    keep_last: int = setting(3, "--keep-last", "Keep last",
                             "keep the N most recent checkpoints (and always the best one)", CHECKPOINTS, minimum=1)
    device: str = setting("auto", "--device", "Device", "where to train", CHECKPOINTS, metavar="DEVICE",
                          choices=DEVICES, also=(r"cuda:\d+", "cuda:N"))
    precision: str = setting("auto", "--precision", "Precision",
                             "auto: bf16 autocast on GPUs and CPUs that run bf16 natively, else fp32",
                             CHECKPOINTS, metavar="PRECISION", choices=PRECISIONS)
    compile: bool = setting(False, "--compile", "Compile",
                            "torch.compile the model for training (needs a C++ compiler on a CPU); "
                            "the first step includes the compile time", CHECKPOINTS)
    fsdp: bool = setting(False, "--fsdp", "FSDP",
                         "under torchrun, shard the weights, gradients and optimizer state across the processes "
                         "(FSDP2) instead of copying them to each (DDP), for a model too large for one GPU; "
                         "on one process it trains as without it. A resumed run keeps it unless --no-fsdp; "
                         "checkpoints are the same either way", CHECKPOINTS)

    def __post_init__(self) -> None:
        for declared in SETTINGS:
            if not declared.model:
                declared.check(getattr(self, declared.name))
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ConfigError(f"training field 'min_lr' must be between 0 and lr ({self.lr}), got {self.min_lr!r}")

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

    def with_settings(self, values: Mapping[str, Any]) -> "TrainConfig":
        """This config with settings (by name, as in SETTINGS) replaced; model settings go to model_overrides."""
        model = {name: value for name, value in values.items() if _declared(name).model}
        rest = {name: value for name, value in values.items() if name not in model}
        if model:
            rest["model_overrides"] = {**self.model_overrides, **model}
        return replace(self, **rest)


def _declared_fields() -> list[Setting]:
    hints = typing.get_type_hints(TrainConfig)
    declared = []
    for f in fields(TrainConfig):
        if "setting" not in f.metadata:
            continue
        kinds = typing.get_args(hints[f.name]) or (hints[f.name],)
        kind = next(k for k in kinds if k is not type(None))
        declared.append(replace(f.metadata["setting"], name=f.name, kind=kind, optional=type(None) in kinds))
        if f.name == "preset":  # the model's own settings follow the preset
            declared.extend(_MODEL_SETTINGS)
    return declared


# Settings of the model (GPTConfig fields) that a run may change from its preset's.
_MODEL_SETTINGS = (
    Setting("--context-length", "Context", "the model's context length (replaces the preset's)", WHAT,
            minimum=1, fixed_on_resume=True, basic=True, model=True, name="context_length", kind=int, optional=True),
)

SETTINGS: tuple[Setting, ...] = tuple(_declared_fields())


def _declared(name: str) -> Setting:
    for declared in SETTINGS:
        if declared.name == name:
            return declared
    raise ConfigError(f"unknown training setting {name!r}")


def resumed_config(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> TrainConfig:
    """A run's stored settings (its config.json) with `changes` on top.

    Settings that decide the model are kept: giving one the value the run already
    has is fine, giving it another is a ConfigError naming both values.
    """
    train = TrainConfig.from_dict(stored["train"])
    for name, new in changes.items():
        declared = _declared(name)
        if not declared.fixed_on_resume:
            continue
        was = stored["model"].get(name) if declared.model else getattr(train, name)
        if new != was:
            raise ConfigError(f"{declared.flag} cannot be changed when resuming: the run has {was}, not {new}; "
                              "it keeps its model")
    return train.with_settings({name: new for name, new in changes.items() if not _declared(name).model})


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
    # The demo corpus taught in minutes on a laptop CPU: gpt-nano at 4e-4 barely moves in the
    # ~40 steps of an epoch (measured at batch 8: val loss 10.58 at step 11; 7.02 at 3e-3).
    "demo": TrainConfig(preset="gpt-nano", lr=3e-3, batch_size=4, epochs=2),
}


def get_recipe(name: str) -> TrainConfig:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
