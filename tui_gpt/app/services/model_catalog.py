"""The models the app can prompt: what the model picker offers, and loading one.

A `ModelChoice` is plain data (it is remembered between sessions and names
the transcript); loading it needs the engine, which is imported inside the
functions that run in worker threads, never at import time.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

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

    @property
    def transcript_key(self) -> str:
        """Which transcript this model writes to: one per preset, GPT-2 size, run or file."""
        if self.kind == "file":
            digest = hashlib.sha1(str(Path(self.name).expanduser().resolve()).encode()).hexdigest()[:8]
            return f"file-{Path(self.name).name}-{digest}"
        return f"{self.kind}-{self.name}"

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
    description: str  # e.g. "run nano-1 at step 120 (val loss 5.12)"
    notes: list[str]


def available_choices(runs: list[Any]) -> list[ModelChoice]:
    """Every model on offer: each run's checkpoints, local GPT-2 weights, fresh presets.

    `runs` is the run store's list of summaries (newest first).
    """
    from engine.model.config import PRESETS
    from engine.weights.pretrained import available_gpt2_models

    choices: list[ModelChoice] = []
    for run in runs:
        if run.steps > 0:
            choices.append(ModelChoice("run", run.name, "latest"))
            if run.best_val_loss is not None:
                choices.append(ModelChoice("run", run.name, "best"))
    choices += [ModelChoice("pretrained", name) for name in available_gpt2_models()]
    choices += [ModelChoice("fresh", name) for name in PRESETS]
    return choices


def load_choice(choice: ModelChoice, runs_dir: Path, device: str) -> LoadedModel:
    """Load a model; TuiGptError (or OSError, torch's out-of-memory) when it cannot be."""
    import torch

    from engine.runs.checkpoints import best_checkpoint, latest_checkpoint

    from engine.weights.checkpoint import load_model
    from engine.fast.decoding_weights import prompting_model
    from engine.errors import CheckpointError
    from engine.weights.pretrained import load_any_model

    if choice.kind == "run":
        find = best_checkpoint if choice.checkpoint == "best" else latest_checkpoint
        info = find(Path(runs_dir) / choice.name / "checkpoints")
        if info is None:
            raise CheckpointError(f"run {choice.name} has no {choice.checkpoint} checkpoint yet")
        model, notes = load_model(info.path, device=device)
        loss = f", val loss {info.val_loss:.3f}" if info.val_loss is not None else ""
        return LoadedModel(choice, prompting_model(model), f"run {choice.name} at step {info.step}{loss}", notes)
    spec = choice.name
    if choice.kind == "fresh":
        torch.manual_seed(FRESH_WEIGHTS_SEED)
        spec = f"fresh:{choice.name}"  # never a file that happens to be called like the preset
    model, description = load_any_model(spec, device=device)
    return LoadedModel(choice, prompting_model(model), description, [])
