"""Plain text files (.txt, .md, possibly compressed): each file is one document."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from engine.data.corpus import UnusableText, decode_utf8_blocks
from engine.data.sources.base import ByteCounter, stamp_digest
from engine.data.sources.compression import open_stream
from engine.errors import CorpusError


class TextFile:
    """One text file as one document (invalid UTF-8 bytes become U+FFFD, counted)."""

    kind = "text"

    def __init__(self, path: Path, skip_unusable: bool = False):
        self.path = path
        self.skip_unusable = skip_unusable  # a binary or unreadable file: a warning instead of an error
        self.name = path.name
        self.size_bytes = path.stat().st_size
        self.counter = ByteCounter()
        self.replaced_bytes = 0
        self.unusable: str | None = None  # why the file gave no document, once iterated

    def fingerprint(self) -> str:
        return stamp_digest(self.kind, [self.path], None)

    def bytes_read(self) -> int:
        return self.counter.total()

    def documents(self) -> Iterator[str]:
        parts: list[str] = []
        self.replaced_bytes, self.unusable = 0, None
        try:
            with self.path.open("rb") as raw:
                self.counter.current = raw
                for text, replaced in decode_utf8_blocks(open_stream(self.path, raw)):
                    parts.append(text)
                    self.replaced_bytes += replaced
        except (UnusableText, OSError) as error:
            why = str(error) if isinstance(error, UnusableText) else f"it cannot be read ({error.strerror or error})"
            if not self.skip_unusable:
                raise CorpusError(f"cannot use {self.path}: {why}") from None
            self.unusable = why
            return
        finally:
            self.counter.current, self.counter.done = None, self.size_bytes
        text = "".join(parts)
        if text.strip():
            yield text
        else:
            self.unusable = "the file is empty" if not text else "the file holds only whitespace"

    def warnings(self) -> list[str]:
        lines = []
        if self.replaced_bytes:
            lines.append(f"{self.replaced_bytes} invalid UTF-8 byte(s) in {self.path} were replaced with U+FFFD")
        if self.unusable:
            lines.append(f"skipped {self.path}: {self.unusable}")
        return lines
