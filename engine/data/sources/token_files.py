"""Token files used as they are: nanoGPT's .bin (bare uint16 ids) and llm.c's shards.

nanoGPT writes `train.bin` and `val.bin` side by side: little-endian uint16 GPT-2
ids, nothing else. llm.c's shards start with a header of 256 int32: magic 20240520,
version 1, the number of tokens; then the tokens as uint16. Its shards name their
split (`..._train_000001.bin`, `..._val_000000.bin`).

Each file is checked once when opened (size, header, every id below the vocabulary),
then memory-mapped; nothing is copied or re-tokenized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.data.sources.base import TokenSource, stamp_digest
from engine.data.token_array import TOKEN_DTYPE, map_tokens
from engine.errors import CorpusError

LLMC_MAGIC = 20240520
LLMC_VERSION = 1
LLMC_HEADER_INTS = 256
VOCAB_SIZE = 50257  # GPT-2's
_CHECK_TOKENS = 2**24  # ids checked per pass, to keep memory bounded


def is_llmc_shard(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(4)
    return len(head) == 4 and int.from_bytes(head, "little") == LLMC_MAGIC


def open_token_file(path: Path) -> np.ndarray:
    """The checked ids of one .bin file, llm.c shard or nanoGPT file, as a read-only memmap."""
    with path.open("rb") as file:
        head = file.read(LLMC_HEADER_INTS * 4)
    header = np.frombuffer(head[: len(head) // 4 * 4], dtype="<i4")
    size = path.stat().st_size
    if len(header) and header[0] == LLMC_MAGIC:
        tokens = _open_llmc(path, header, size)
    elif len(header) == LLMC_HEADER_INTS and size == LLMC_HEADER_INTS * 4 + int(header[2]) * TOKEN_DTYPE.itemsize:
        # Shaped like an llm.c shard (its token count fits the size) but with another magic.
        raise CorpusError(f"{path}: llm.c header has magic {header[0]}, expected {LLMC_MAGIC} (a GPT-2 token shard)")
    else:
        if size % TOKEN_DTYPE.itemsize:
            raise CorpusError(f"{path} has an odd size ({size} bytes): not a file of uint16 token ids")
        tokens = _map(path, 0, size // TOKEN_DTYPE.itemsize)
    _check_vocabulary(path, tokens)
    return tokens


def _open_llmc(path: Path, header: np.ndarray, size: int) -> np.ndarray:
    if len(header) < LLMC_HEADER_INTS:
        raise CorpusError(f"{path}: llm.c header is cut short ({size} bytes, the header alone is {LLMC_HEADER_INTS * 4})")
    if header[1] != LLMC_VERSION:
        raise CorpusError(f"{path}: llm.c shard version {header[1]}, only version {LLMC_VERSION} is supported")
    n_tokens = int(header[2])
    expected = LLMC_HEADER_INTS * 4 + n_tokens * TOKEN_DTYPE.itemsize
    if n_tokens < 0 or size != expected:
        raise CorpusError(f"{path}: the llm.c header promises {n_tokens} tokens ({expected} bytes), the file has {size} bytes")
    return _map(path, LLMC_HEADER_INTS * 4, n_tokens)


def _map(path: Path, offset: int, n_tokens: int) -> np.ndarray:
    if n_tokens == 0:
        raise CorpusError(f"{path} holds no tokens")
    return map_tokens(path, n_tokens, offset)


def _check_vocabulary(path: Path, tokens: np.ndarray) -> None:
    for start in range(0, len(tokens), _CHECK_TOKENS):
        chunk = tokens[start : start + _CHECK_TOKENS]
        highest = int(chunk.max())
        if highest >= VOCAB_SIZE:
            at = start + int(np.argmax(chunk >= VOCAB_SIZE))
            raise CorpusError(f"{path}: token {at} is {int(chunk[at - start])}, beyond GPT-2's vocabulary of {VOCAB_SIZE}; "
                              "is it a file of uint16 GPT-2 ids?")


def split_of(path: Path) -> str:
    """"val" for a validation file (val.bin, *_val_*.bin, *validation*), else "train"."""
    stem = path.stem.lower()
    words = stem.replace("-", "_").replace(".", "_").split("_")
    return "val" if any(word in ("val", "valid", "validation") for word in words) else "train"


def token_source(paths: list[Path], name: str, root: Path | None) -> TokenSource:
    """The token files `paths` (in order), each in its split; a lone train.bin brings its val.bin."""
    if len(paths) == 1 and split_of(paths[0]) == "train":
        sibling = paths[0].with_name(paths[0].name.replace("train", "val"))
        if sibling != paths[0] and sibling.is_file():
            paths = [paths[0], sibling]
    splits: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    for path in paths:
        splits[split_of(path)].append(open_token_file(path))
    if not splits["train"]:
        raise CorpusError(f"{name}: no training token files, only validation ones ({', '.join(p.name for p in paths)})")
    return TokenSource(name=name, fingerprint=stamp_digest("tokens", paths, root),
                       train=splits["train"], val=splits["val"])
