"""One answer to "load a model from X": a run, a checkpoint, GPT-2, the book's files or a fresh preset.

`generate`, the app's model picker and `train --init-from` all load through
`resolve_model`. A `ModelSpec` is what the user named; `SOURCES` lists, in
order, the kinds of thing it may name, and the first source that recognises
the spec loads it. A new kind of weights is one more entry in SOURCES: an
object with `recognises(spec)` (cheap: a look at the path or at a file's
header) and `load(spec, device)`, placed before the sources it must win over:
a new file format goes before BookFile (which claims every .pt) and
UnreadableFile (which refuses every file nobody claimed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import torch

from engine.errors import CheckpointError
from engine.model.config import PRESETS
from engine.model.gpt import GPTModel
from engine.runs.checkpoints import MODEL_CONFIG, best_checkpoint, latest_checkpoint
from engine.runs.store import RunStore
from engine.weights.book import BOOK_SUFFIXES, load_book_state_dict
from engine.weights.checkpoint import load_model
from engine.weights.gpt2 import (
    GPT2_SIZES,
    Gpt2Files,
    gpt2_size,
    is_hf_folder,
    load_gpt2_files,
    local_gpt2_files,
    resolve_gpt2_files,
)
from engine.weights.llmc import load_llmc
from engine.weights.nanogpt import is_nanogpt_checkpoint, load_nanogpt
from engine.weights.tensor_files import safetensors_names

FRESH_PREFIX = "fresh:"  # "fresh:gpt-nano": the preset, never a file that happens to be called like it


@dataclass(frozen=True)
class ModelSpec:
    """What to load, as the user named it."""

    text: str  # a path, a GPT-2 name or size, a preset or "fresh:PRESET"; with kind "run", a run's name
    kind: Literal["any", "run", "checkpoint"] = "any"  # "checkpoint": `text` must be a tui-gpt checkpoint
    best: bool = False  # for a run: its checkpoint with the lowest val loss rather than its latest
    data_dir: str | Path | None = None  # for a run: the data dir that holds it (None: RunStore's default)

    @property
    def path(self) -> Path:
        return Path(self.text).expanduser()


@dataclass
class ResolvedModel:
    model: GPTModel  # in eval mode
    description: str  # one line for the user, e.g. "run nano-1 at step 120, val loss 5.123"
    notes: list[str] = field(default_factory=list)  # worth telling: a skipped checkpoint, an adopted config
    path: Path | None = None  # the file or folder the weights came from; None for fresh weights


class Source(Protocol):
    def recognises(self, spec: ModelSpec) -> bool: ...

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel: ...


class RunCheckpoint:
    """A run, by name: its latest checkpoint, or its best one."""

    def recognises(self, spec: ModelSpec) -> bool:
        return spec.kind == "run"

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        run = RunStore(spec.data_dir).open(spec.text)
        info = (best_checkpoint if spec.best else latest_checkpoint)(run.checkpoints_dir)
        if info is None:
            raise CheckpointError(f"run {spec.text!r} has no {'best ' if spec.best else ''}checkpoint yet")
        model, notes = load_model(info.path, device=device)
        loss = f", val loss {info.val_loss:.3f}" if info.val_loss is not None else ""
        return ResolvedModel(model, f"run {run.name} at step {info.step}{loss}", notes, info.path)


class TuiGptCheckpoint:
    """A checkpoint folder, a run's folder, or a model.safetensors with its model.json beside it."""

    def recognises(self, spec: ModelSpec) -> bool:
        path = spec.path
        return (spec.kind == "checkpoint"
                or (path.is_dir() and not is_hf_folder(path))
                or (path.suffix == ".safetensors" and path.is_file() and path.with_name(MODEL_CONFIG).is_file()))

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        model, notes = load_model(spec.path, device=device)
        return ResolvedModel(model, f"tui-gpt checkpoint {spec.path} ({_millions(model)} parameters)", notes,
                             spec.path)


class HfLayout:
    """GPT-2 in the Hugging Face layout: a folder of config.json and model.safetensors, or a bare .safetensors."""

    def recognises(self, spec: ModelSpec) -> bool:
        path = spec.path
        return is_hf_folder(path) or (path.suffix == ".safetensors" and path.is_file()
                                      and "tok_emb.weight" not in safetensors_names(path))

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        return _gpt2(local_gpt2_files(spec.path), device)


class NanoGptCheckpoint:
    """nanoGPT's ckpt.pt: its model_args and state dict (padded vocabulary cropped to GPT-2's)."""

    def recognises(self, spec: ModelSpec) -> bool:
        return spec.path.suffix in (".pt", ".pth") and spec.path.is_file() and is_nanogpt_checkpoint(spec.path)

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        model, description = load_nanogpt(spec.path, device)
        return ResolvedModel(model, description, path=spec.path)


class LlmcModel:
    """llm.c's model file (gpt2_124M.bin, gpt2_124M_bf16.bin): a 256-int header, then the parameters."""

    def recognises(self, spec: ModelSpec) -> bool:
        return spec.path.suffix == ".bin" and spec.path.is_file()

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        model, description = load_llmc(spec.path, device)
        return ResolvedModel(model, description, path=spec.path)


class BookFile:
    """A state_dict of the book's GPTModel: .pth/.pt, or .safetensors with the book's names."""

    def recognises(self, spec: ModelSpec) -> bool:
        return spec.path.suffix in BOOK_SUFFIXES and spec.path.is_file()

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        model = load_book_state_dict(spec.path, device=device)
        return ResolvedModel(model, f"book-format state dict {spec.path} ({_millions(model)} parameters)",
                             path=spec.path)


class UnreadableFile:
    """Any other existing file: refused by name, rather than mistaken for a GPT-2 name or a preset."""

    def recognises(self, spec: ModelSpec) -> bool:
        return spec.path.is_file()

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        raise CheckpointError(f"{spec.path}: cannot load a {spec.path.suffix or 'suffix-less'} file; "
                              "use .safetensors, .pth, .pt or llm.c's .bin, or a folder")


class Gpt2Name:
    """OpenAI's GPT-2 by name or size ("gpt2-medium", "355M"): from the hub cache, else downloaded."""

    def recognises(self, spec: ModelSpec) -> bool:
        return gpt2_size(spec.text) is not None

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        return _gpt2(resolve_gpt2_files(spec.text), device)


class FreshPreset:
    """A preset ("gpt-nano", or "fresh:gpt-nano") with random weights from torch's global generator."""

    def recognises(self, spec: ModelSpec) -> bool:
        return _preset_name(spec) in PRESETS

    def load(self, spec: ModelSpec, device: str | torch.device) -> ResolvedModel:
        preset = _preset_name(spec)
        model = GPTModel(PRESETS[preset]).to(device).eval()
        return ResolvedModel(model, f"untrained {preset} ({_millions(model)} parameters, random weights)")


SOURCES: tuple[Source, ...] = (
    RunCheckpoint(), TuiGptCheckpoint(), HfLayout(), NanoGptCheckpoint(), LlmcModel(), BookFile(), UnreadableFile(),
    Gpt2Name(), FreshPreset(),
)


def resolve_model(spec: str | ModelSpec, device: str | torch.device = "cpu") -> ResolvedModel:
    """The model `spec` names, with a one-line description of what was loaded; CheckpointError if none."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec(spec)
    for source in SOURCES:
        if source.recognises(spec):
            return source.load(spec, device)
    raise CheckpointError(
        f"{spec.text!r} is not an existing file or folder, a GPT-2 name ({', '.join(GPT2_SIZES)}) "
        f"or a preset ({', '.join(PRESETS)})"
    )


def _gpt2(files: Gpt2Files, device: str | torch.device) -> ResolvedModel:
    model = load_gpt2_files(files, device)
    return ResolvedModel(model, f"GPT-2 weights ({_millions(model)} parameters) from {files.source}",
                         path=files.weights_path)


def _preset_name(spec: ModelSpec) -> str:
    return spec.text.strip().removeprefix(FRESH_PREFIX)


def _millions(model: GPTModel) -> str:
    return f"{model.num_parameters() / 1e6:.0f}M"
