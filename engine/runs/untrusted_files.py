"""Reading and appending to files that anyone may have edited, copied, linked or replaced.

Run folders are shared, unpacked and edited by hand, so every file in them is
treated as untrusted input:
- reads open only regular files (a FIFO, a device, or a link to one is refused
  before anything is read, so nothing hangs on `/dev/zero` or a pipe), and read at
  most a bounded number of bytes;
- JSON is parsed within those bytes and a bounded nesting depth;
- files tui-gpt appends to or locks are never opened through a symbolic link,
  and must be regular files, so nothing outside the data dir is written to.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterable

from engine.errors import TuiGptError

# Config, status, manifests and app state are a few kilobytes; this leaves room for hand edits.
MAX_JSON_BYTES = 16 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # O_NONBLOCK: opening a FIFO never waits
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UntrustedFileError(TuiGptError, OSError):
    """A file is not what tui-gpt can safely read or write; the message says which and why."""


def open_regular_for_reading(path: str | Path) -> int:
    """A descriptor of `path` opened for reading, if it is a regular file (links to one are fine)."""
    fd = os.open(path, _READ_FLAGS)
    try:
        _require_regular(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_for_writing(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor for appending to or locking `path`: never through a link, only a regular file."""
    try:
        fd = os.open(path, flags | _NO_FOLLOW | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFileError(f"{path} is a symbolic link; tui-gpt does not write through links") from None
        raise
    try:
        _require_regular(fd, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The whole of a regular file, refused (UntrustedFileError) when it is longer than `limit` bytes."""
    fd = open_regular_for_reading(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UntrustedFileError(f"{path} is larger than {_size(limit)}, more than such a file ever holds")
    return data


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES) -> Any:
    """JSON from a regular file of at most `limit` bytes; ValueError when it is not valid JSON."""
    return parse_json(read_bytes(path, limit))


def parse_json(data: bytes | str) -> Any:
    """json.loads, with nesting too deep for the parser reported as a ValueError like any other bad JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a regular file (a pipe or device is refused, never read forever).

    A file `hash_ahead` is hashing, and that has not changed since, takes its result.
    """
    with os.fdopen(open_regular_for_reading(path), "rb") as f:
        with _ahead_lock:
            ahead = _ahead.pop(_identity(os.fstat(f.fileno())), None)
        if ahead is not None and ahead.exception() is None:
            return ahead.result()
        return sha256_of(f)


def hash_ahead(paths: Iterable[str | Path]) -> None:
    """Start hashing these files on a background thread, for a `file_sha256` to come.

    A command that checks a checkpoint's weights before loading them starts this
    before it imports torch: hashlib and file reads let go of the GIL, so on a
    second core the hashing costs no time. The result is keyed by the file's
    device, inode, size and modification time, so a file changed meanwhile is
    hashed again; a file that cannot be read is left to `file_sha256` to report.
    """
    for path in paths:
        try:
            fd = open_regular_for_reading(path)
        except OSError:
            continue
        f = os.fdopen(fd, "rb")
        future: Future = Future()
        with _ahead_lock:
            _ahead[_identity(os.fstat(fd))] = future
        threading.Thread(target=_hash_into, args=(f, future), name="hash-ahead", daemon=True).start()


_ahead: dict[tuple[int, int, int, int], Future] = {}
_ahead_lock = threading.Lock()


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _hash_into(f, future: Future) -> None:
    with f:
        try:
            future.set_result(sha256_of(f))
        except OSError as exc:
            future.set_exception(exc)


def sha256_of(f) -> str:
    """The SHA-256 of what is left to read in the open binary file `f`."""
    # Large reads into one buffer: on a background thread each chunk must win the GIL back
    # from the main thread (up to 5 ms each), so few chunks keep the hashing off the waiting path.
    digest, buffer = hashlib.sha256(), bytearray(16 << 20)
    view = memoryview(buffer)
    while n := f.readinto(buffer):
        digest.update(view[:n])
    return digest.hexdigest()


def is_link(path: str | Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def _require_regular(fd: int, path: str | Path) -> None:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise UntrustedFileError(f"{path} is {kind}, not a regular file")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"
