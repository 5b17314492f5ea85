"""A corpus tokenized once, kept as memory-mapped uint16 token files.

Cached under `<cache_dir>/<fingerprint prefix>-r<train_ratio>/`: `train.bin` and
`val.bin` (GPT-2 token ids as little-endian uint16) and `meta.json`, which is
written last and is what makes the folder trusted. A folder whose meta is
missing, different or disagrees with the file sizes is rebuilt.

The split is the book's character split of the text. Each split is encoded
exactly as `tokenizer.encode(split, allowed_special={"<|endoftext|>"})`, in
pieces of at most ENCODE_CHARS characters so memory stays bounded. Pieces are
cut just before a whitespace run that follows a non-space character: GPT-2's
pre-tokenizer never joins such characters into one piece, so the cut changes
no token. (Only ENCODE_CHARS characters without any whitespace would force an
inexact cut.)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, IO

import numpy as np

from engine.runs.atomic import DiskFullError, WriteError, atomic_write_json, write_error
from engine.runs.untrusted_files import file_sha256, read_json
from engine.data.corpus import Corpus
from engine.data.token_array import TOKEN_DTYPE, map_tokens
from engine.errors import CorpusError, TuiGptError
from engine.model.tokenizer import END_OF_TEXT, get_tokenizer

CACHE_FORMAT = 2  # 2: meta.json records each split's SHA-256
ENCODE_CHARS = 8 * 2**20
SPLITS = ("train", "val")

ProgressCallback = Callable[[int, int], None]  # (characters tokenized, characters in all)


@dataclass(frozen=True)
class TokenSplits:
    train: np.ndarray  # read-only np.memmap of uint16 (a plain empty array when the split has no tokens)
    val: np.ndarray
    cache_path: Path
    built: bool  # False when an existing cache was reused


def load_token_splits(
    corpus: Corpus, cache_dir: Path, train_ratio: float = 0.9, on_progress: ProgressCallback | None = None
) -> TokenSplits:
    """The corpus's train and validation tokens, from the cache or tokenized into it now."""
    folder = Path(cache_dir) / f"{corpus.fingerprint[:32]}-r{train_ratio!r}"
    meta = _trusted_meta(folder, corpus, train_ratio)
    built = meta is None
    if meta is None:
        meta = _build(corpus, folder, train_ratio, on_progress)
    train, val = (map_tokens(folder / f"{split}.bin", meta[f"{split}_tokens"]) for split in SPLITS)
    return TokenSplits(train=train, val=val, cache_path=folder, built=built)


def _expected_meta(corpus: Corpus, train_ratio: float) -> dict:
    return {
        "format": CACHE_FORMAT,
        "tokenizer": get_tokenizer().name,
        "dtype": TOKEN_DTYPE.str,
        "fingerprint": corpus.fingerprint,
        "train_ratio": train_ratio,
    }


def _trusted_meta(folder: Path, corpus: Corpus, train_ratio: float) -> dict | None:
    try:
        meta = read_json(folder / "meta.json")
        sizes_match = all(
            (folder / f"{split}.bin").stat().st_size == meta[f"{split}_tokens"] * TOKEN_DTYPE.itemsize
            for split in SPLITS
        )
        # A cache edited, damaged or swapped since it was written is rebuilt, never trained on.
        intact = sizes_match and all(file_sha256(folder / f"{split}.bin") == meta["sha256"][split] for split in SPLITS)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = _expected_meta(corpus, train_ratio)
    if not intact or any(meta.get(key) != value for key, value in expected.items()):
        return None
    return meta


def _build(corpus: Corpus, folder: Path, train_ratio: float, on_progress: ProgressCallback | None) -> dict:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)  # untrusted until rebuilt
        train_chars = int(train_ratio * corpus.n_chars)
        chars_encoded = 0

        def count_encoded(n_chars: int) -> None:
            nonlocal chars_encoded
            chars_encoded += n_chars
            if on_progress is not None:
                on_progress(chars_encoded, corpus.n_chars)

        with (
            _SplitEncoder(folder / "train.bin", count_encoded) as train,
            _SplitEncoder(folder / "val.bin", count_encoded) as val,
        ):
            position = 0
            for chunk in corpus.iter_chunks():
                head = chunk[: max(0, train_chars - position)]
                train.add(head)
                val.add(chunk[len(head) :])
                position += len(chunk)
            if position != corpus.n_chars:
                raise CorpusError(f"corpus {corpus.name} changed after it was loaded; load it again")
            meta = {**_expected_meta(corpus, train_ratio), "train_tokens": train.finish(), "val_tokens": val.finish()}
        meta["sha256"] = {split: file_sha256(folder / f"{split}.bin") for split in SPLITS}
        # Last, and synced with the folder: only now is the cache trusted.
        atomic_write_json(folder / "meta.json", meta)
    except WriteError:
        raise
    except OSError as error:
        raise cache_write_error(f"the token cache in {folder}", error) from None
    return meta


def cache_write_error(what: str, error: OSError) -> TuiGptError:
    """The one line for a write into the data dir's cache that failed: the disk is full, or `what` cannot be written."""
    failure = write_error(what, error)
    return failure if isinstance(failure, DiskFullError) else CorpusError(str(failure))


class _SplitEncoder:
    """Tokenizes one split piece by piece into a temporary file that becomes `path` on finish().

    Leaving its `with` block without finish() removes the temporary file.
    """

    def __init__(self, path: Path, on_encoded: Callable[[int], None]):
        self.path = path
        self.on_encoded = on_encoded  # told how many characters each encode call took
        self.finished = False
        self.tokenizer = get_tokenizer()
        self.pending: list[str] = []
        self.pending_chars = 0
        self.n_tokens = 0
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.temp_path = Path(temp_name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")

    def add(self, text: str) -> None:
        if not text:
            return
        self.pending.append(text)
        self.pending_chars += len(text)
        if self.pending_chars <= ENCODE_CHARS:
            return
        buffer, start = "".join(self.pending), 0
        while len(buffer) - start > ENCODE_CHARS:
            window = buffer[start : start + ENCODE_CHARS]
            cut = _token_safe_cut(window) or len(window)
            self._encode(window[:cut])
            start += cut
        self.pending, self.pending_chars = [buffer[start:]], len(buffer) - start

    def finish(self) -> int:
        """Encode what is left, make the file durable and put it in place; the number of tokens."""
        self._encode("".join(self.pending))
        self.pending, self.pending_chars = [], 0
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp_path, self.path)
        self.finished = True
        return self.n_tokens

    def __enter__(self) -> "_SplitEncoder":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.file.close()
        if not self.finished:
            self.temp_path.unlink(missing_ok=True)

    def _encode(self, text: str) -> None:
        if not text:
            return
        ids = np.array(self.tokenizer.encode(text, allowed_special={END_OF_TEXT}), dtype=TOKEN_DTYPE)
        ids.tofile(self.file)
        self.n_tokens += len(ids)
        self.on_encoded(len(text))


def _token_safe_cut(text: str) -> int:
    """The last index before a whitespace run that follows a non-space character (0: none).

    Newlines are preferred so pieces end at line ends; any such index splits text into
    two strings whose GPT-2 tokens concatenate to the tokens of text.
    """
    for separator in ("\n", " "):
        index = text.rfind(separator)
        if index > 0:
            index = len(text[:index].rstrip())
            if index > 0:
                return index
    return 0
