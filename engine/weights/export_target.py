"""Where an export is written: never over an existing file unless forced, never half-written.

The destination is checked before any work is done, so a bad one fails at once.
The export is then written under a hidden temporary name beside the
destination (a file or a folder) and renamed into place when complete; a
failure, or Ctrl-C, removes the temporary copy and leaves the destination as
it was. With `force`, an existing destination is set aside and removed only
once the new one is in place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from engine.errors import ConfigError
from engine.runs.atomic import WriteError, fsync_dir
from engine.runs.atomic import write_error as atomic_write_error  # the one wording of a failed write


def check_destination(path: Path, force: bool) -> None:
    """ConfigError if `path` exists and may not be replaced; WriteError if its folder cannot be written."""
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; choose another name or add --force to replace it")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise WriteError(f"cannot write {path}: {parent} is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(path, exc) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {path}: no permission to write in {parent}")


@contextlib.contextmanager
def writing(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write the export to; on success it becomes `path`."""
    path = Path(path)
    check_destination(path, force)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield temp
        _replace(temp, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        _remove(temp)


def _replace(temp: Path, path: Path) -> None:
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
    replaced = path.exists() or path.is_symlink()
    if replaced:
        os.rename(path, aside)
    try:
        os.rename(temp, path)
    except OSError:
        if replaced:
            os.rename(aside, path)
        raise
    fsync_dir(path.parent)
    _remove(aside)


def _remove(path: Path) -> None:
    """Best effort: a failure to clean up must not hide the error being reported."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _write_error(path: Path, exc: OSError) -> WriteError:
    if isinstance(exc, WriteError):
        return exc
    return atomic_write_error(path, exc)

