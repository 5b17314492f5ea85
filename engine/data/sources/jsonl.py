"""JSON Lines (.jsonl, possibly compressed): each line is a record, its text field one document.

A line that is not JSON is skipped and counted (a warning names the first such line);
a record without the text field, or whose field is not a string, stops the read with
the fields the record has: that is a wrong --text-field, not a damaged line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from engine.data.sources.base import RecordFile
from engine.data.sources.compression import open_stream
from engine.errors import CorpusError


class JsonLinesFile(RecordFile):
    kind = "jsonl"

    def __init__(self, path: Path, text_field: str = "text"):
        super().__init__(path, text_field)
        self.bad_lines: list[int] = []  # 1-based numbers of lines that are not JSON (the first few)
        self.n_bad_lines = 0

    def bytes_read(self) -> int:
        return self.counter.total()

    def documents(self) -> Iterator[str]:
        self.bad_lines, self.n_bad_lines = [], 0
        try:
            with self.path.open("rb") as raw:
                self.counter.current = raw
                for number, line in enumerate(open_stream(self.path, raw), start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:  # also invalid UTF-8
                        self.n_bad_lines += 1
                        if len(self.bad_lines) < 3:
                            self.bad_lines.append(number)
                        continue
                    text = self._text_of(record, number)
                    if text.strip():
                        yield text
        except OSError as error:
            raise CorpusError(f"cannot read {self.path}: {error.strerror or error}") from None
        finally:
            self.counter.current, self.counter.done = None, self.size_bytes

    def _text_of(self, record: object, number: int) -> str:
        where = f"{self.path} line {number}"
        if not isinstance(record, dict):
            raise CorpusError(f"{where} is a JSON {type(record).__name__}, not an object with a {self.text_field!r} field")
        if self.text_field not in record:
            found = ", ".join(map(repr, record)) or "none"
            raise CorpusError(f"{where} has no {self.text_field!r} field (fields: {found}); choose one with --text-field")
        text = record[self.text_field]
        if not isinstance(text, str):
            raise CorpusError(f"{where}: field {self.text_field!r} is a {type(text).__name__}, not a string")
        return text

    def warnings(self) -> list[str]:
        if not self.n_bad_lines:
            return []
        lines = ", ".join(map(str, self.bad_lines)) + (", ..." if self.n_bad_lines > len(self.bad_lines) else "")
        return [f"skipped {self.n_bad_lines} line(s) of {self.path} that are not JSON (line {lines})"]
