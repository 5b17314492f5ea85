"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the same folder, is flushed to disk, and
is then renamed over the target; the folder itself is synced so that the rename
survives a power cut. A failed write (a full disk above all) leaves the old file
as it was and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any

from engine.errors import TuiGptError

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


class WriteError(TuiGptError, OSError):
    """A file could not be written; the message says which and why."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


class DiskFullError(WriteError):
    """The disk (or the user's quota) is full."""


def is_out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE


def write_error(path: str | Path, exc: OSError) -> WriteError:
    """The one-line error to show for an OSError met while writing `path`."""
    if is_out_of_space(exc):
        return DiskFullError(f"disk full while writing {path}", exc.errno)
    return WriteError(f"cannot write {path}: {exc.strerror or exc}", exc.errno)


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems do not sync folders; the rename is still atomic there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically; raises WriteError (DiskFullError) on failure."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (NaN is refused: the file stays valid JSON)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
