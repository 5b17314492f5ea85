"""Token files as arrays: their one dtype, mapping one, and several (shards) seen as one 1-D array."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# GPT-2's 50,257 ids all fit in 16 bits; little-endian, as nanoGPT and llm.c write them.
TOKEN_DTYPE = np.dtype("<u2")


def map_tokens(path: str | Path, n_tokens: int, offset: int = 0) -> np.ndarray:
    """`n_tokens` ids of a token file from byte `offset`, memory-mapped read-only."""
    if n_tokens == 0:  # numpy cannot map an empty file
        return _no_tokens()
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=offset, shape=(n_tokens,))


def _no_tokens() -> np.ndarray:
    empty = np.zeros(0, dtype=TOKEN_DTYPE)
    empty.flags.writeable = False
    return empty


class ConcatenatedTokens:
    """Read-only concatenation of 1-D uint16 arrays; a slice that spans shards is copied together."""

    ndim = 1

    def __init__(self, parts: list[np.ndarray], dtype=TOKEN_DTYPE):
        self.parts = [part for part in parts if len(part)]
        self.dtype = dtype
        self.offsets = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("ConcatenatedTokens supports contiguous slices only")
        start, stop, _ = index.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        while start < stop:
            part, base = self.parts[first], int(self.offsets[first])
            end = min(stop, base + len(part))
            pieces.append(part[start - base : end - base])
            start, first = end, first + 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def as_token_array(parts: list[np.ndarray]):
    """One array when there is one part (as it is), else their concatenation."""
    kept = [part for part in parts if len(part)]
    if len(kept) == 1:
        return kept[0]
    if not kept:
        return _no_tokens()
    return ConcatenatedTokens(kept)
