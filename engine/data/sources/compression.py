"""Reading gzip, zstd and xz files as plain byte streams, known by their magic bytes.

A truncated or damaged compressed file fails as one CorpusError that names it,
wherever in the stream the damage is found.
"""

from __future__ import annotations

import gzip
import io
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO

from engine.errors import CorpusError

# Suffixes recognised on a name (the format under them is read from the rest of the name).
SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".xz": "xz"}
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ\x00": "xz"}


def compression_of(path: Path) -> str | None:
    """"gzip", "zstd", "xz" or None, from the file's first bytes."""
    with path.open("rb") as file:
        head = file.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def strip_suffix(name: str) -> str:
    """The name without a compression suffix: "a.jsonl.gz" -> "a.jsonl"."""
    lower = name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def open_stream(path: Path, raw: BinaryIO) -> BinaryIO:
    """The decompressed bytes of `raw` (the open file at `path`), or `raw` if it is not compressed."""
    kind = compression_of(path)
    if kind is None:
        return raw
    if kind == "gzip":
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
    elif kind == "xz":
        stream = lzma.LZMAFile(raw, mode="rb")  # type: ignore[assignment]
    else:
        try:
            import zstandard
        except ImportError:
            raise CorpusError(f"{path} is zstd-compressed; reading it needs the zstandard package "
                              "(pip install 'tui-gpt[data]')") from None
        stream = _ZstdFrames(raw, zstandard.ZstdDecompressor())  # type: ignore[assignment]
    return io.BufferedReader(_Checked(stream, path, kind), buffer_size=2**20)


class _Checked(io.RawIOBase):
    """A decompressing stream whose failures (truncation, corruption) become CorpusError."""

    def __init__(self, stream: BinaryIO, path: Path, kind: str):
        super().__init__()
        self.stream, self.path, self.kind = stream, path, kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except EOFError:
            raise CorpusError(f"{self.path} is truncated: its {self.kind} stream ends early") from None
        except (OSError, zlib.error, lzma.LZMAError, ValueError) as error:
            raise CorpusError(f"{self.path} is not valid {self.kind} data ({error})") from None
        except Exception as error:  # zstandard.ZstdError, which needs no import to be caught here
            raise CorpusError(f"{self.path} is not valid {self.kind} data ({error})") from None
        return data

    def close(self) -> None:
        self.stream.close()
        super().close()


class _ZstdFrames:
    """zstd frames one after another; EOFError if the last one is cut off.

    (zstandard's own stream reader returns b"" at a cut-off frame instead of failing.)
    """

    def __init__(self, raw: BinaryIO, decompressor):
        self.raw, self.decompressor = raw, decompressor
        self.frame = decompressor.decompressobj()
        self.pending = b""
        self.in_frame = False  # input of the current frame has been seen

    def read(self, size: int = -1) -> bytes:
        while not self.pending:
            block = self.raw.read(2**20)
            if not block:
                if self.in_frame and not self.frame.eof:
                    raise EOFError
                return b""
            while block:
                self.in_frame = True
                self.pending += self.frame.decompress(block)
                block = b""
                if self.frame.eof:
                    block, self.frame, self.in_frame = self.frame.unused_data, self.decompressor.decompressobj(), False
        size = len(self.pending) if size is None or size < 0 else size
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def close(self) -> None:
        pass  # the raw file belongs to the caller
