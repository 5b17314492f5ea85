"""Checkpoint folders on disk: their layout, manifest, listing, retention and checks. No torch.

    <run>/checkpoints/step-00000120/
        model.safetensors   the model's weights (a tied output head is stored once, as tok_emb.weight)
        model.json          the GPTConfig, plus "format"
        state.safetensors   tensors of the training state (optimizer moments, RNG states)
        state.json          the rest of the training state, as JSON (see engine.training.state_codec)
        COMPLETE            manifest: step, val_loss and each file's size and SHA-256
    <run>/checkpoints/best.json   {"step", "val_loss", "path"}: the lowest val_loss kept

A checkpoint is built in a hidden temporary folder, synced to disk, and renamed
into place in one step (engine.training.checkpointing writes it), so a crash or
a full disk never leaves a half-written checkpoint under a step name. This
module knows the folders; the tensors in them are read by engine.weights.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, ConfigError
from engine.model.config import GPTConfig
from engine.runs import untrusted_files
from engine.runs.atomic import WriteError, atomic_write_json, fsync_dir

FORMAT = 1
MANIFEST = "COMPLETE"
MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model.json"
STATE_TENSORS = "state.safetensors"
STATE_META = "state.json"
BEST_RECORD = "best.json"
FILES = (MODEL_WEIGHTS, MODEL_CONFIG, STATE_TENSORS, STATE_META)
_STEP_DIR = re.compile(r"step-(\d+)")
_LEFTOVER = re.compile(r"\.(tmp|old)-step-\d+-\d+")  # a save that crashed, or an old copy being replaced


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    path: Path
    val_loss: float | None
    complete: bool


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# --- writing ---------------------------------------------------------------------------------


def synced_file_record(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        digest = untrusted_files.sha256_of(f)
        return {"size": f.tell(), "sha256": digest}


def move_into_place(temp: Path, final: Path) -> None:
    parent = final.parent
    if not final.exists():
        os.rename(temp, final)
        fsync_dir(parent)
        return
    # Saving a step again (after a resume): the new copy is complete before the old one goes.
    aside = parent / f".old-{final.name}-{os.getpid()}"
    remove_dir(aside)
    os.rename(final, aside)
    try:
        os.rename(temp, final)
    except OSError:
        os.rename(aside, final)
        raise
    fsync_dir(parent)
    remove_dir(aside)


def apply_retention(checkpoints_dir: Path, keep_last: int, just_saved: Path) -> None:
    complete = list_checkpoints(checkpoints_dir)
    best = _best_of(complete)
    keep = {info.path for info in complete[:keep_last]} | {just_saved}
    if best is not None:
        keep.add(best.path)
    for entry in checkpoints_dir.iterdir():
        is_ours = _STEP_DIR.fullmatch(entry.name) or _LEFTOVER.fullmatch(entry.name)
        if is_ours and entry.is_dir() and entry not in keep:
            remove_dir(entry)
    if best is not None:
        _record_best(checkpoints_dir, best)


def _record_best(checkpoints_dir: Path, best: CheckpointInfo) -> None:
    record = {"step": best.step, "val_loss": best.val_loss, "path": best.path.name}
    path = checkpoints_dir / BEST_RECORD
    try:
        if untrusted_files.read_json(path) == record:
            return
    except (OSError, ValueError):
        pass  # missing or unreadable: write it afresh
    try:
        atomic_write_json(path, record)
    except WriteError as exc:
        raise CheckpointError(f"checkpoint at step {best.step} is saved, but {exc}") from exc


def remove_dir(path: Path) -> None:
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
            manifest = read_manifest(path)
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


# --- checking --------------------------------------------------------------------------------


def find_model_weights(path: Path, notes: list[str]) -> Path:
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path} is not a .safetensors weights file")
        if not path.with_name(MODEL_CONFIG).is_file():
            raise CheckpointError(f"no {MODEL_CONFIG} beside {path}: it holds the config the weights need")
        if (path.parent / MANIFEST).is_file():
            check_model_files(path.parent)
        return path
    if (path / MANIFEST).is_file():
        check_model_files(path)
        return path / MODEL_WEIGHTS
    if (path / "checkpoints").is_dir():  # a run folder
        path = path / "checkpoints"
    for info in list_checkpoints(path):
        try:
            check_model_files(info.path)
            return info.path / MODEL_WEIGHTS
        except CheckpointError as exc:
            notes.append(f"skipped checkpoint at step {info.step}: {exc}")
    raise CheckpointError(f"no complete checkpoint at {path}")


def check_model_files(folder: Path) -> None:
    check_files(folder, read_manifest(folder), (MODEL_WEIGHTS, MODEL_CONFIG), hashes=True)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint (no {MANIFEST} file)")
    manifest = read_json(path)
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


def check_files(folder: Path, manifest: dict[str, Any], names: tuple[str, ...], hashes: bool) -> None:
    for name in names:
        path = folder / name
        record = manifest["files"].get(name)
        if not isinstance(record, dict):
            raise CheckpointError(f"checkpoint file {folder / MANIFEST} is corrupt: it does not list {name}")
        try:
            info = path.stat()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint file {path} is missing") from None
        if not stat.S_ISREG(info.st_mode):  # a device or a pipe would never finish hashing
            raise CheckpointError(f"checkpoint file {path} is not a regular file")
        size = info.st_size
        if size != record.get("size"):
            raise CheckpointError(f"checkpoint file {path} is corrupt: {size} bytes, expected {record.get('size')}")
        if hashes and untrusted_files.file_sha256(path) != record.get("sha256"):
            raise CheckpointError(f"checkpoint file {path} is corrupt: its SHA-256 does not match the manifest")


def read_json(path: Path) -> Any:
    try:
        return untrusted_files.read_json(path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {exc}") from exc


def read_model_config(path: Path) -> GPTConfig:
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {path} is corrupt: not a model config")
    data = dict(data)
    _check_format(data.pop("format", None), path)
    try:
        return GPTConfig.from_dict(data)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint file {path} is corrupt: {exc}") from exc
