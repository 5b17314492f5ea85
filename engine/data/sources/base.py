"""What every data source is: documents to tokenize, or tokens to use as they are.

A `DocumentSource` yields documents (one str each: a text file, a JSONL record,
a Parquet row, a dataset row) in a stable order, and a fingerprint that changes
when they may have. A `TokenSource` already holds GPT-2 token ids (nanoGPT
.bin files, llm.c shards) and gives its train and validation arrays directly.
Adding a format is one module that provides one of these two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

SOURCES_VERSION = "tui-gpt-sources-1"  # change it when reading a format changes the documents
_SAMPLE_BYTES = 2**16


class DocumentSource(Protocol):
    name: str  # what the user called it, for messages and listings
    size_bytes: int  # bytes on disk (compressed where it is), for progress

    def fingerprint(self) -> str:
        """A hex digest that changes when the documents may have changed."""

    def documents(self) -> Iterator[str]:
        """Every document, in a stable order; raises CorpusError for unusable input."""

    def bytes_read(self) -> int:
        """How many of `size_bytes` the iteration has consumed so far."""

    def warnings(self) -> list[str]:
        """Lines the user should see (skipped lines or files); complete once iteration ended."""


@dataclass
class TokenSource:
    """Token ids used as they are: the arrays of each split, in order (read-only, uint16)."""

    name: str
    fingerprint: str
    train: list[np.ndarray]
    val: list[np.ndarray] = field(default_factory=list)  # empty: the source has no validation part


class ByteCounter:
    """Counts the bytes read from the files of a source, for progress lines."""

    def __init__(self) -> None:
        self.done = 0  # bytes of files finished
        self.current = None  # the open raw file of the file being read, if any

    def total(self) -> int:
        try:
            return self.done + (self.current.tell() if self.current is not None else 0)
        except (OSError, ValueError):  # closed under us: count what was finished
            return self.done


def stamp_digest(kind: str, paths: list[Path], root: Path | None, *options: str) -> str:
    """A fingerprint from each file's name, size, mtime and first and last 64 KiB.

    Hashing every byte of a large corpus would cost as much as reading it; the stamp
    notices every ordinary change (edits change the mtime) at the cost of one stat
    and two small reads per file.
    """
    hasher = hashlib.sha256()
    for part in (SOURCES_VERSION, kind, *options):
        hasher.update(part.encode("utf-8") + b"\0")
    for path in paths:
        stat = path.stat()
        name = path.relative_to(root).as_posix() if root else path.name
        hasher.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode("utf-8"))
        with path.open("rb") as file:
            hasher.update(file.read(_SAMPLE_BYTES))
            if stat.st_size > _SAMPLE_BYTES:
                file.seek(max(_SAMPLE_BYTES, stat.st_size - _SAMPLE_BYTES))
                hasher.update(file.read(_SAMPLE_BYTES))
    return hasher.hexdigest()


class RecordFile:
    """A file of records whose `text_field` is the document (JSON Lines, Parquet): what they share."""

    kind = "records"

    def __init__(self, path: Path, text_field: str = "text"):
        self.path = path
        self.name = path.name
        self.text_field = text_field
        self.size_bytes = path.stat().st_size
        self.counter = ByteCounter()

    def fingerprint(self) -> str:
        return stamp_digest(self.kind, [self.path], None, self.text_field)
