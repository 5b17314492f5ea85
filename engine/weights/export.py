"""Exporting a model: which weights (a run's checkpoint, a checkpoint folder, any model spec), to which format.

The one entry point of the CLI's `tui-gpt export` and the app's Runs pane.
Everything the user names is checked before any weights are read, so bad input
fails at once and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import CheckpointError, ConfigError
from engine.model.gpt import GPTModel
from engine.runs.checkpoints import (
    MANIFEST,
    best_checkpoint,
    latest_checkpoint,
    read_manifest,
)
from engine.runs.store import Run
from engine.weights.export_target import check_destination
from engine.weights.model_card import ModelCard, card_for_model, card_for_run

FORMATS = ("hf", "gguf")


@dataclass(frozen=True)
class ExportRequest:
    format: str  # one of FORMATS
    out: Path
    gguf_type: str = "f16"
    force: bool = False

    def check(self) -> None:
        """ConfigError for an unknown format or GGUF type; ConfigError/WriteError for a destination that will not do."""
        from engine.weights.export_gguf import (
            check_gguf_type,
            gguf_package,
            modelfile_path,
        )

        if self.format not in FORMATS:
            raise ConfigError(f"unknown export format {self.format!r}; choose one of: {', '.join(FORMATS)}")
        check_gguf_type(self.gguf_type)
        check_destination(self.out, self.force)
        if self.format == "gguf":
            gguf_package()
            check_destination(modelfile_path(self.out), self.force)

    def write(self, model: GPTModel, card: ModelCard) -> list[Path]:
        """Export; returns the paths written."""
        self.check()
        if self.format == "hf":
            from engine.weights.export_hf import export_hf

            return [export_hf(model, self.out, card, self.force)]
        from engine.weights.export_gguf import export_gguf, modelfile_path

        return [export_gguf(model, self.out, card, self.gguf_type, self.force), modelfile_path(self.out)]


def load_run_for_export(run: Run, best: bool = False) -> tuple[GPTModel, ModelCard]:
    """A run's latest (or best) checkpoint, with the card its run folder tells."""
    info = (best_checkpoint if best else latest_checkpoint)(run.checkpoints_dir)
    if info is None:
        raise CheckpointError(f"run {run.name} has no {'best ' if best else ''}checkpoint to export")
    return _checkpoint_with_card(info.path, run, info.step)


def load_checkpoint_for_export(path: Path) -> tuple[GPTModel, ModelCard]:
    """A checkpoint folder (or a run's folder: its latest checkpoint); from a run, the run's card too."""
    path = Path(path)
    if (path / "checkpoints").is_dir() and (path / "config.json").is_file():
        return load_run_for_export(Run(path.name, path))
    run_dir = path.parent.parent
    if (path / MANIFEST).is_file() and path.parent.name == "checkpoints" and (run_dir / "config.json").is_file():
        return _checkpoint_with_card(path, Run(run_dir.name, run_dir), read_manifest(path)["step"])
    from engine.weights.checkpoint import load_model

    model, _ = load_model(path)
    return model, card_for_model(model.cfg, path.name, f"checkpoint {path}")


def load_spec_for_export(spec: str) -> tuple[GPTModel, ModelCard]:
    """Whatever `--model` accepts (engine.weights.resolver)."""
    from engine.weights.resolver import resolve_model

    resolved = resolve_model(spec)
    return resolved.model, card_for_model(resolved.model.cfg, Path(spec).name or spec, resolved.description)


def _checkpoint_with_card(path: Path, run: Run, step: int) -> tuple[GPTModel, ModelCard]:
    from engine.weights.checkpoint import load_model

    model, _ = load_model(path)
    return model, card_for_run(run, model.cfg, step, path.name)
