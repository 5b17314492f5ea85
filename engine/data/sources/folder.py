"""A folder of document files (shards): each file's documents in turn, in relative-path order.

Hidden files and folders are left out, as are files of no known format. A text
file that holds nothing (empty, only whitespace, binary) is skipped with a warning
as before; any other bad file stops the read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from engine.data.sources.base import SOURCES_VERSION, DocumentSource


class DocumentFolder:
    kind = "folder"

    def __init__(self, folder: Path, files: list[DocumentSource]):
        self.folder = folder
        self.name = folder.name
        self.files = files
        self.size_bytes = sum(f.size_bytes for f in files)
        self.finished_bytes = 0
        self.current: DocumentSource | None = None

    def fingerprint(self) -> str:
        hasher = hashlib.sha256(f"{SOURCES_VERSION}\0{self.kind}\0".encode("utf-8"))
        for file in self.files:
            relative = file.path.relative_to(self.folder).as_posix()  # type: ignore[attr-defined]
            hasher.update(f"{relative}\0{file.fingerprint()}\0".encode("utf-8"))
        return hasher.hexdigest()

    def bytes_read(self) -> int:
        return self.finished_bytes + (self.current.bytes_read() if self.current else 0)

    def documents(self) -> Iterator[str]:
        self.finished_bytes = 0
        for file in self.files:
            self.current = file
            yield from file.documents()
            self.finished_bytes += file.size_bytes
        self.current = None

    def warnings(self) -> list[str]:
        return [line for file in self.files for line in file.warnings()]
