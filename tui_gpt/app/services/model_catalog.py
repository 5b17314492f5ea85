"""The models the app can prompt: what the model picker offers, and loading one.

A `ModelChoice` is plain data (it is remembered between sessions and names
the transcript); loading it needs the engine, which is imported inside the
functions that run in worker threads, never at import time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tui_gpt.app.services.transcripts import TranscriptKey

Kind = Literal["fresh", "pretrained", "run", "file"]
# The seed of a fresh model's weights: every launch shows the same gibberish.
FRESH_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ModelChoice:
    kind: Kind
    name: str  # a preset, a GPT-2 size, a run name or a checkpoint path
    checkpoint: Literal["", "latest", "best"] = ""  # for runs

    @property
    def label(self) -> str:
        if self.kind == "fresh":
            return f"{self.name} (untrained)"
        if self.kind == "pretrained":
            return f"{self.name} (OpenAI weights)"
        if self.kind == "run":
            return f"run {self.name} ({self.checkpoint} checkpoint)"
        return f"checkpoint {Path(self.name).name}"

    def transcript_key(self, run_id: str = "") -> TranscriptKey:
        """Which transcript this model writes to: one per preset, GPT-2 size and file, and one per run and checkpoint.

        `run_id` (Run.creation_id) keeps a deleted run's transcript from passing to a new run of the same name.
        """
        if self.kind == "run":
            return ("run", self.name, self.checkpoint, run_id)
        if self.kind == "file":
            return ("file", str(Path(self.name).expanduser().resolve()))
        return (self.kind, self.name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ModelChoice":
        """A choice remembered in app-state.json, checked as strictly as one typed in; else ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"not a model choice: {data!r}")
        kind, name, checkpoint = data.get("kind"), data.get("name"), data.get("checkpoint", "")
        valid = (kind in ("fresh", "pretrained", "run", "file") and isinstance(name, str) and name
                 and checkpoint in (("latest", "best") if kind == "run" else ("",)))
        if not valid:
            raise ValueError(f"not a model choice: {data!r}")
        if kind == "run":
            from engine.errors import RunError
            from engine.runs.store import validate_run_name  # torch-free

            try:
                validate_run_name(name)
            except RunError as exc:
                raise ValueError(str(exc)) from None
        return cls(kind, name, checkpoint)


DEFAULT_CHOICE = ModelChoice("fresh", "gpt-nano")


@dataclass
class LoadedModel:
    choice: ModelChoice
    model: Any  # engine.model.gpt.GPTModel, in eval mode
    description: str  # e.g. "run nano-1 at step 120, val loss 5.123"
    notes: list[str]
    transcript_key: TranscriptKey


def available_choices(runs: list[Any]) -> list[ModelChoice]:
    """Every model on offer: each run's checkpoints, local GPT-2 weights, fresh presets.

    `runs` is the run store's list of summaries (newest first).
    """
    from engine.model.config import PRESETS
    from engine.weights.gpt2 import available_gpt2_models

    choices: list[ModelChoice] = []
    for run in runs:
        if run.steps > 0:
            choices.append(ModelChoice("run", run.name, "latest"))
            if run.best_val_loss is not None:
                choices.append(ModelChoice("run", run.name, "best"))
    choices += [ModelChoice("pretrained", name) for name in available_gpt2_models()]
    choices += [ModelChoice("fresh", name) for name in PRESETS]
    return choices


def load_choice(choice: ModelChoice, store: Any, device: str) -> LoadedModel:
    """Load a model from the run store `store` (engine.runs.store.RunStore) or elsewhere.

    Raises TuiGptError (or OSError, torch's out-of-memory) when it cannot be loaded.
    """
    import torch

    from engine.fast.decoding_weights import prompting_model
    from engine.weights.resolver import FRESH_PREFIX, ModelSpec, resolve_model

    if choice.kind == "run":
        spec = ModelSpec(choice.name, kind="run", best=choice.checkpoint == "best", data_dir=store.data_dir)
    elif choice.kind == "fresh":
        torch.manual_seed(FRESH_WEIGHTS_SEED)
        spec = ModelSpec(FRESH_PREFIX + choice.name)
    else:
        spec = ModelSpec(choice.name)
    resolved = resolve_model(spec, device=device)
    run_id = store.open(choice.name).creation_id() if choice.kind == "run" else ""
    return LoadedModel(choice, prompting_model(resolved.model), resolved.description, resolved.notes,
                       choice.transcript_key(run_id))
