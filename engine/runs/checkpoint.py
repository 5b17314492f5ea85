"""Checkpoints: a run's weights and training state in folders that are complete or ignored.

    <run>/checkpoints/step-00000120/
        model.safetensors   the model's weights (a tied output head is stored once, as tok_emb.weight)
        model.json          the GPTConfig, plus "format"
        state.safetensors   tensors of the training state (optimizer moments, RNG states)
        state.json          the rest of the training state, as JSON (see engine.training.state_codec)
        COMPLETE            manifest: step, val_loss and each file's size and SHA-256
    <run>/checkpoints/best.json   {"step", "val_loss", "path"}: the lowest val_loss kept

A checkpoint is built in a hidden temporary folder, synced to disk, and renamed
into place in one step, so a crash or a full disk never leaves a half-written
checkpoint under a step name. Nothing here unpickles: safetensors and JSON only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.runs.atomic import WriteError, atomic_write_json, fsync_dir, is_out_of_space
from engine.model.config import GPTConfig
from engine.errors import CheckpointError, ConfigError
from engine.model.gpt import GPTModel, meta_model
from engine.training.state_codec import state_to_tensors, tensors_to_state

__all__ = [
    "CheckpointInfo", "LoadedCheckpoint", "save_checkpoint", "load_checkpoint", "load_latest_valid",
    "load_model", "list_checkpoints", "latest_checkpoint", "best_checkpoint", "check_model_state",
    "state_to_tensors", "tensors_to_state",
]

FORMAT = 1
MANIFEST = "COMPLETE"
MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model.json"
STATE_TENSORS = "state.safetensors"
STATE_META = "state.json"
BEST_RECORD = "best.json"
_FILES = (MODEL_WEIGHTS, MODEL_CONFIG, STATE_TENSORS, STATE_META)
_STEP_DIR = re.compile(r"step-(\d+)")
_LEFTOVER = re.compile(r"\.(tmp|old)-step-\d+-\d+")  # a save that crashed, or an old copy being replaced
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path
    val_loss: float | None
    complete: bool


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


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# --- saving ---------------------------------------------------------------------------------


def save_checkpoint(
    checkpoints_dir: str | Path,
    step: int,
    model: nn.Module,
    training_tensors: dict[str, torch.Tensor],
    training_meta: Any,
    val_loss: float | None,
    keep_last: int = 3,
) -> Path:
    """Save a complete checkpoint for `step`, then keep only the newest `keep_last` and the best."""
    if keep_last < 1:
        raise ConfigError(f"keep_last must be at least 1, got {keep_last}")
    checkpoints_dir = Path(checkpoints_dir)
    final = checkpoints_dir / step_dir_name(step)
    temp = checkpoints_dir / f".tmp-{final.name}-{os.getpid()}"
    if val_loss is not None and not math.isfinite(val_loss):
        val_loss = None
    try:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        _remove_dir(temp)
        temp.mkdir()
        _write_contents(temp, step, _unwrap(model), training_tensors, training_meta, val_loss)
        _move_into_place(temp, final)
    except BaseException as exc:
        _remove_dir(temp)
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
    _apply_retention(checkpoints_dir, keep_last, final)
    return final


def _unwrap(model: nn.Module) -> nn.Module:
    # torch.compile and DistributedDataParallel wrap the model and prefix its parameter names.
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _write_contents(folder: Path, step: int, model: nn.Module, training_tensors: dict[str, torch.Tensor],
                    training_meta: Any, val_loss: float | None) -> None:
    config: GPTConfig = model.cfg
    weights = model.state_dict()
    if config.tie_embeddings:
        del weights["out_head.weight"]  # the same tensor as tok_emb.weight; re-tied on load
    _save_tensors(weights, folder / MODEL_WEIGHTS)
    atomic_write_json(folder / MODEL_CONFIG, {"format": FORMAT, **config.to_dict()})
    _save_tensors(training_tensors, folder / STATE_TENSORS)
    atomic_write_json(folder / STATE_META, training_meta)
    files = {name: _synced_file_record(folder / name) for name in _FILES}
    # Written last: a folder whose manifest lists every file is a complete checkpoint.
    atomic_write_json(folder / MANIFEST, {"format": FORMAT, "step": step, "val_loss": val_loss, "files": files})


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    try:
        save_file(plain, path)
    except SafetensorError as exc:
        # safetensors reports I/O failures (a full disk) with the errno only in its message.
        found = _OS_ERROR_IN_TEXT.search(str(exc))
        if found is None:
            raise
        raise OSError(int(found[1]), str(exc)) from exc


def _synced_file_record(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        return {"size": f.tell(), "sha256": digest.hexdigest()}


def _move_into_place(temp: Path, final: Path) -> None:
    parent = final.parent
    if not final.exists():
        os.rename(temp, final)
        fsync_dir(parent)
        return
    # Saving a step again (after a resume): the new copy is complete before the old one goes.
    aside = parent / f".old-{final.name}-{os.getpid()}"
    _remove_dir(aside)
    os.rename(final, aside)
    try:
        os.rename(temp, final)
    except OSError:
        os.rename(aside, final)
        raise
    fsync_dir(parent)
    _remove_dir(aside)


def _apply_retention(checkpoints_dir: Path, keep_last: int, just_saved: Path) -> None:
    complete = list_checkpoints(checkpoints_dir)
    best = _best_of(complete)
    keep = {info.path for info in complete[:keep_last]} | {just_saved}
    if best is not None:
        keep.add(best.path)
    for entry in checkpoints_dir.iterdir():
        is_ours = _STEP_DIR.fullmatch(entry.name) or _LEFTOVER.fullmatch(entry.name)
        if is_ours and entry.is_dir() and entry not in keep:
            _remove_dir(entry)
    if best is not None:
        _record_best(checkpoints_dir, best)


def _record_best(checkpoints_dir: Path, best: CheckpointInfo) -> None:
    record = {"step": best.step, "val_loss": best.val_loss, "path": best.path.name}
    path = checkpoints_dir / BEST_RECORD
    try:
        if json.loads(path.read_text(encoding="utf-8")) == record:
            return
    except (OSError, ValueError):
        pass  # missing or unreadable: write it afresh
    try:
        atomic_write_json(path, record)
    except WriteError as exc:
        raise CheckpointError(f"checkpoint at step {best.step} is saved, but {exc}") from exc


def _remove_dir(path: Path) -> None:
    """Best-effort removal (a failure here must not hide the error being reported)."""
    if not path.is_dir():
        return
    # The manifest goes first so that a removal cut short leaves an incomplete folder, not a corrupt one.
    with contextlib.suppress(OSError):
        (path / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


# --- finding ---------------------------------------------------------------------------------


def list_checkpoints(checkpoints_dir: str | Path, include_incomplete: bool = False) -> list[CheckpointInfo]:
    """Checkpoints in `checkpoints_dir`, newest step first; only complete ones unless asked."""
    try:
        entries = list(os.scandir(checkpoints_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    infos = []
    for entry in entries:
        found = _STEP_DIR.fullmatch(entry.name)
        if found is None or not entry.is_dir():
            continue
        path = Path(entry.path)
        try:
            manifest = _read_manifest(path)
        except CheckpointError:
            manifest = None
        if manifest is not None or include_incomplete:
            val_loss = manifest["val_loss"] if manifest else None
            infos.append(CheckpointInfo(int(found[1]), path, val_loss, manifest is not None))
    return sorted(infos, key=lambda info: info.step, reverse=True)


def latest_checkpoint(checkpoints_dir: str | Path) -> CheckpointInfo | None:
    complete = list_checkpoints(checkpoints_dir)
    return complete[0] if complete else None


def best_checkpoint(checkpoints_dir: str | Path) -> CheckpointInfo | None:
    """The complete checkpoint with the lowest validation loss (the newer one on a tie)."""
    return _best_of(list_checkpoints(checkpoints_dir))


def _best_of(newest_first: list[CheckpointInfo]) -> CheckpointInfo | None:
    scored = [info for info in newest_first if info.val_loss is not None]
    return min(scored, key=lambda info: info.val_loss) if scored else None


# --- loading ---------------------------------------------------------------------------------


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> LoadedCheckpoint:
    """Load a checkpoint folder; sizes are always checked, SHA-256 sums when `verify`."""
    path = Path(path)
    manifest = _read_manifest(path)
    _check_files(path, manifest, _FILES, hashes=verify)
    config = _read_model_config(path / MODEL_CONFIG)
    model_state = _load_tensors(path / MODEL_WEIGHTS, map_location)
    check_model_state(config, model_state, path / MODEL_WEIGHTS)
    return LoadedCheckpoint(
        config=config,
        model_state=model_state,
        training_tensors=_load_tensors(path / STATE_TENSORS, map_location),
        training_meta=_read_json(path / STATE_META),
        step=manifest["step"],
        val_loss=manifest["val_loss"],
        path=path,
    )


def load_latest_valid(
    checkpoints_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[LoadedCheckpoint | None, list[str]]:
    """The newest checkpoint that loads, and a warning for each newer one skipped as corrupt."""
    warnings = []
    for info in list_checkpoints(checkpoints_dir):
        try:
            return load_checkpoint(info.path, map_location), warnings
        except CheckpointError as exc:
            warnings.append(f"skipped checkpoint at step {info.step}: {exc}")
    return None, warnings


def load_model(
    path: str | Path, expected: GPTConfig | None = None, adopt: bool = True, device: str | torch.device = "cpu"
) -> tuple[GPTModel, list[str]]:
    """A GPTModel (in eval mode) from a checkpoint folder, a run's checkpoints, or a model.safetensors.

    If `expected` differs from the stored config, the stored one is used when `adopt`
    (with a note saying so), else CheckpointError. Weights load all or nothing.
    """
    notes: list[str] = []
    weights_file = _find_model_weights(Path(path), notes)
    config = _read_model_config(weights_file.with_name(MODEL_CONFIG))
    if expected is not None and expected != config:
        differences = ", ".join(
            f"{name} {stored!r} != {wanted!r}"
            for name, stored in config.to_dict().items()
            if stored != (wanted := getattr(expected, name))
        )
        if not adopt:
            raise CheckpointError(f"checkpoint {weights_file.parent} has a different model config ({differences})")
        notes.append(f"using the checkpoint's config (differs in: {differences})")
    state = _load_tensors(weights_file, device)
    check_model_state(config, state, weights_file)
    model = meta_model(config)  # no memory or time spent on weights about to be replaced
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval(), notes


def _find_model_weights(path: Path, notes: list[str]) -> Path:
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path} is not a .safetensors weights file")
        if not path.with_name(MODEL_CONFIG).is_file():
            raise CheckpointError(f"no {MODEL_CONFIG} beside {path}: it holds the config the weights need")
        if (path.parent / MANIFEST).is_file():
            _check_model_files(path.parent)
        return path
    if (path / MANIFEST).is_file():
        _check_model_files(path)
        return path / MODEL_WEIGHTS
    if (path / "checkpoints").is_dir():  # a run folder
        path = path / "checkpoints"
    for info in list_checkpoints(path):
        try:
            _check_model_files(info.path)
            return info.path / MODEL_WEIGHTS
        except CheckpointError as exc:
            notes.append(f"skipped checkpoint at step {info.step}: {exc}")
    raise CheckpointError(f"no complete checkpoint at {path}")


def _check_model_files(folder: Path) -> None:
    _check_files(folder, _read_manifest(folder), (MODEL_WEIGHTS, MODEL_CONFIG), hashes=True)


def check_model_state(config: GPTConfig, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise CheckpointError unless `state` has exactly the tensor names and shapes `config` needs."""
    expected = _expected_shapes(config)
    optional = {"out_head.weight"} if config.tie_embeddings else set()
    problems = [f"missing {name}" for name in expected if name not in state and name not in optional]
    for name, tensor in state.items():
        if name not in expected:
            problems.append(f"unexpected {name}")
        elif tuple(tensor.shape) != expected[name]:
            problems.append(f"{name} has shape {list(tensor.shape)}, expected {list(expected[name])}")
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"weights in {source} do not fit the model config: {'; '.join(problems[:4])}{more}")


@lru_cache(maxsize=16)
def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in meta_model(config).state_dict().items()}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint (no {MANIFEST} file)")
    manifest = _read_json(path)
    found = _STEP_DIR.fullmatch(folder.name)
    valid = (
        isinstance(manifest, dict)
        and isinstance(manifest.get("files"), dict)
        and isinstance(manifest.get("step"), int)
        and (found is None or int(found[1]) == manifest["step"])
        and (manifest.get("val_loss") is None or isinstance(manifest["val_loss"], (int, float)))
    )
    if not valid:
        raise CheckpointError(f"checkpoint file {path} is corrupt: not a checkpoint manifest")
    _check_format(manifest.get("format"), path)
    return manifest


def _check_format(version: Any, path: Path) -> None:
    if not isinstance(version, int):
        raise CheckpointError(f"checkpoint file {path} is corrupt: no format version")
    if version > FORMAT:
        raise CheckpointError(f"{path} was written by a newer tui-gpt (format {version}); upgrade tui-gpt to load it")


def _check_files(folder: Path, manifest: dict[str, Any], names: tuple[str, ...], hashes: bool) -> None:
    for name in names:
        path = folder / name
        record = manifest["files"].get(name)
        if not isinstance(record, dict):
            raise CheckpointError(f"checkpoint file {folder / MANIFEST} is corrupt: it does not list {name}")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint file {path} is missing") from None
        if size != record.get("size"):
            raise CheckpointError(f"checkpoint file {path} is corrupt: {size} bytes, expected {record.get('size')}")
        if hashes and _sha256(path) != record.get("sha256"):
            raise CheckpointError(f"checkpoint file {path} is corrupt: its SHA-256 does not match the manifest")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {exc}") from exc


def _read_model_config(path: Path) -> GPTConfig:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} is corrupt: not a model config")
    data = dict(data)
    _check_format(data.pop("format", None), path)
    try:
        return GPTConfig.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {exc}") from exc


def _load_tensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=str(device))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint file {path} is corrupt: {reason}") from exc
