"""The prompt transcripts: every prompt and completion, one JSONL file per model.

    <data_dir>/transcripts/<encoded model key>.jsonl   one exchange per line

A model key is a tuple of strings that says which model a transcript belongs
to (see ModelChoice.transcript_key), e.g. ("run", "nano 1", "best", "<run id>").
Its file name is an encoding only that key maps to, so two models never share
a transcript. Each completion keeps its tokens with their probabilities and
the model's top alternatives, so the token inspector works on exchanges from
earlier sessions too. Lines are appended and flushed as each exchange ends; a
torn last line (a crash mid-write) is skipped on reading, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.untrusted_files import open_regular_for_writing, parse_json, read_bytes

# Years of prompting; a larger file was not written by us, and would stall the app at start-up.
MAX_TRANSCRIPT_BYTES = 256 << 20

TranscriptKey = tuple[str, ...]  # never empty

# Lower case only: on a case-insensitive file system "Run" and "run" must not meet.
_KEPT = re.compile(r"[a-z0-9_-]")
_MAX_STEM = 200  # file names are limited to 255 bytes


def transcript_file_name(key: TranscriptKey) -> str:
    """The file name of `key`'s transcript; different keys never get the same name.

    Each part is percent-encoded, everything but a-z, 0-9, "_" and "-" (so "."
    and "%" never occur inside a part), and the parts are joined by "." . A
    name too long for the file system keeps a readable prefix and ends in "~"
    and a SHA-256 digest of the whole encoding ("~" never occurs otherwise).
    """
    stem = ".".join("".join(c if _KEPT.fullmatch(c) else _percent(c) for c in part) for part in key)
    if len(stem) > _MAX_STEM:
        stem = f"{stem[:_MAX_STEM - 65]}~{hashlib.sha256(stem.encode()).hexdigest()}"
    return f"{stem}.jsonl"


def _percent(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


@dataclass(frozen=True)
class TokenRecord:
    """One generated token and what the model thought of it."""

    token_id: int
    text: str
    prob: float
    alternatives: tuple[tuple[int, str, float], ...] = ()  # (token id, text, probability), most likely first

    def to_json(self) -> list[Any]:
        return [self.token_id, self.text, round(self.prob, 6), [[i, t, round(p, 6)] for i, t, p in self.alternatives]]

    @classmethod
    def from_json(cls, data: list[Any]) -> "TokenRecord":
        token_id, text, prob, alternatives = data
        return cls(int(token_id), str(text), float(prob), tuple((int(i), str(t), float(p)) for i, t, p in alternatives))


@dataclass
class Exchange:
    """A prompt, the model's completion and how it was asked for."""

    prompt: str
    model: str  # what generated it, as shown to the user
    settings: dict[str, Any] = field(default_factory=dict)
    tokens: list[TokenRecord] = field(default_factory=list)
    stopped: bool = False  # stopped by the user before max_new_tokens
    error: str | None = None
    seconds: float | None = None  # from asking to the last token on screen

    @property
    def completion(self) -> str:
        return "".join(token.text for token in self.tokens)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "model": self.model,
            "settings": self.settings,
            "tokens": [token.to_json() for token in self.tokens],
            "stopped": self.stopped,
            "error": self.error,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Exchange":
        return cls(
            prompt=str(data["prompt"]),
            model=str(data.get("model", "")),
            settings=dict(data.get("settings") or {}),
            tokens=[TokenRecord.from_json(t) for t in data.get("tokens", [])],
            stopped=bool(data.get("stopped", False)),
            error=data.get("error"),
            seconds=data.get("seconds"),
        )


class TranscriptStore:
    """Reads and appends the transcripts kept under one folder."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path_for(self, model_key: TranscriptKey) -> Path:
        return self.directory / transcript_file_name(model_key)

    def load(self, model_key: TranscriptKey) -> list[Exchange]:
        try:
            data = read_bytes(self.path_for(model_key), MAX_TRANSCRIPT_BYTES)
        except FileNotFoundError:
            return []
        except OSError:  # too large, or not a file: start this model's transcript afresh in memory
            return []
        lines = data.decode("utf-8", "replace").splitlines()
        exchanges = []
        for line in lines:
            try:
                exchanges.append(Exchange.from_json(parse_json(line)))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue  # a torn or foreign line: keep the rest
        return exchanges

    def append(self, model_key: TranscriptKey, exchange: Exchange) -> None:
        """Add one exchange; OSError if the data dir cannot be written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(exchange.to_json(), ensure_ascii=False) + "\n"
        fd = open_regular_for_writing(self.path_for(model_key), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as f:
            if f.tell() and not _ends_with_newline(f.name):
                line = "\n" + line  # after a torn line, start a fresh one rather than extend it
            f.write(line.encode("utf-8"))

    def clear(self, model_key: TranscriptKey) -> None:
        self.path_for(model_key).unlink(missing_ok=True)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"
