"""Saving and loading a run's checkpoints: the model and the whole training state.

The folder layout, manifest and retention are engine.runs.checkpoints'; this
module puts tensors into those folders and takes them out. Nothing unpickles:
safetensors and JSON only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from engine.errors import CheckpointError, ConfigError
from engine.model.config import GPTConfig
from engine.runs.atomic import atomic_write_json, is_out_of_space
from engine.runs.checkpoints import (
    FILES, FORMAT, MANIFEST, MODEL_CONFIG, MODEL_WEIGHTS, STATE_META, STATE_TENSORS, apply_retention, check_files,
    list_checkpoints, move_into_place, read_json, read_manifest, read_model_config, remove_dir, step_dir_name,
    synced_file_record,
)
from engine.training.state_codec import tensors_to_state
from engine.weights.tensor_files import check_model_state, load_tensors, save_tensors


@dataclass
class LoadedCheckpoint:
    config: GPTConfig
    model_state: dict[str, torch.Tensor]
    training_tensors: dict[str, torch.Tensor]
    training_meta: Any
    step: int
    val_loss: float | None
    path: Path

    def training_state(self) -> Any:
        """The structure that was given to `state_to_tensors` when saving."""
        return tensors_to_state(self.training_tensors, self.training_meta)


def save_checkpoint(
    checkpoints_dir: str | Path,
    step: int,
    model: nn.Module,
    training_tensors: dict[str, torch.Tensor],
    training_meta: Any,
    val_loss: float | None,
    keep_last: int = 3,
    model_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save a complete checkpoint for `step`, then keep only the newest `keep_last` and the best.

    `model_state` is the model's full state when its parameters are sharded (FSDP); else `model.state_dict()`.
    """
    if keep_last < 1:
        raise ConfigError(f"keep_last must be at least 1, got {keep_last}")
    checkpoints_dir = Path(checkpoints_dir)
    final = checkpoints_dir / step_dir_name(step)
    temp = checkpoints_dir / f".tmp-{final.name}-{os.getpid()}"
    if val_loss is not None and not math.isfinite(val_loss):
        val_loss = None
    try:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        remove_dir(temp)
        temp.mkdir()
        _write_contents(temp, step, _unwrap(model), training_tensors, training_meta, val_loss, model_state)
        move_into_place(temp, final)
    except BaseException as exc:
        remove_dir(temp)
        if isinstance(exc, OSError):
            if is_out_of_space(exc):
                raise CheckpointError(
                    f"disk full while saving checkpoint at step {step} in {checkpoints_dir}; "
                    "the previous checkpoint is intact"
                ) from exc
            raise CheckpointError(
                f"cannot save checkpoint at step {step} in {checkpoints_dir}: {exc.strerror or exc}"
            ) from exc
        raise
    apply_retention(checkpoints_dir, keep_last, final)
    return final


def _unwrap(model: nn.Module) -> nn.Module:
    # torch.compile and DistributedDataParallel wrap the model and prefix its parameter names.
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _write_contents(folder: Path, step: int, model: nn.Module, training_tensors: dict[str, torch.Tensor],
                    training_meta: Any, val_loss: float | None, model_state: dict[str, torch.Tensor] | None) -> None:
    config: GPTConfig = model.cfg
    weights = dict(model.state_dict() if model_state is None else model_state)
    if config.tie_embeddings:
        del weights["out_head.weight"]  # the same tensor as tok_emb.weight; re-tied on load
    save_tensors(weights, folder / MODEL_WEIGHTS)
    atomic_write_json(folder / MODEL_CONFIG, {"format": FORMAT, **config.to_dict()})
    save_tensors(training_tensors, folder / STATE_TENSORS)
    atomic_write_json(folder / STATE_META, training_meta)
    files = {name: synced_file_record(folder / name) for name in FILES}
    # Written last: a folder whose manifest lists every file is a complete checkpoint.
    atomic_write_json(folder / MANIFEST, {"format": FORMAT, "step": step, "val_loss": val_loss, "files": files})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> LoadedCheckpoint:
    """Load a checkpoint folder; sizes are always checked, SHA-256 sums when `verify`."""
    path = Path(path)
    manifest = read_manifest(path)
    check_files(path, manifest, FILES, hashes=verify)
    config = read_model_config(path / MODEL_CONFIG)
    model_state = load_tensors(path / MODEL_WEIGHTS, map_location)
    check_model_state(config, model_state, path / MODEL_WEIGHTS)
    return LoadedCheckpoint(
        config=config,
        model_state=model_state,
        training_tensors=load_tensors(path / STATE_TENSORS, map_location),
        training_meta=read_json(path / STATE_META),
        step=manifest["step"],
        val_loss=manifest["val_loss"],
        path=path,
    )


def load_latest_valid(
    checkpoints_dir: str | Path, map_location: str | torch.device = "cpu",
    use: Callable[[LoadedCheckpoint], Any] | None = None,
) -> tuple[LoadedCheckpoint | None, list[str]]:
    """The newest checkpoint that loads (and that `use` accepts), and a warning for each newer one skipped.

    `use` puts the checkpoint to work (resuming a run); state files whose hashes match
    but whose contents do not fit (edited, or from another version) make it raise, and
    the next older checkpoint is tried, as for a corrupt file.
    """
    warnings = []
    for info in list_checkpoints(checkpoints_dir):
        try:
            checkpoint = load_checkpoint(info.path, map_location)
            if use is not None:
                use(checkpoint)
            return checkpoint, warnings
        except CheckpointError as exc:
            warnings.append(f"skipped checkpoint at step {info.step}: {exc}")
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.append(f"skipped checkpoint at step {info.step}: its training state is unusable ({reason})")
    return None, warnings
