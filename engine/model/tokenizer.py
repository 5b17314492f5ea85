"""GPT-2's byte-pair encoding through tiktoken, loaded from the bundled ranks file.

No network is needed: the ranks ship with the package and their checksum is
verified on load, so a damaged install fails loudly instead of mis-tokenizing.
torch is imported only by the book's tensor helpers, so that the processes that
tokenize a data set (engine.data.encoding) start without it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import tiktoken

from engine.errors import TuiGptError

if TYPE_CHECKING:
    import torch

RANKS_FILE = "r50k_base.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
# The pre-tokenization pattern of GPT-2 (tiktoken's r50k_base / gpt2).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _read_ranks() -> dict[bytes, int]:
    try:
        data = resources.files("engine.resources").joinpath(RANKS_FILE).read_bytes()
    except OSError as exc:
        raise TuiGptError(f"bundled tokenizer file {RANKS_FILE} cannot be read ({exc.strerror}); reinstall tui-gpt") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise TuiGptError(f"bundled tokenizer file {RANKS_FILE} is damaged (sha256 {digest[:12]}…); reinstall tui-gpt")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """GPT-2's encoding, equal to `tiktoken.get_encoding("gpt2")`, built offline."""
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=_read_ranks(),
        special_tokens={END_OF_TEXT: END_OF_TEXT_ID},
        explicit_n_vocab=50257,
    )


@lru_cache(maxsize=1)
def token_byte_lengths() -> torch.Tensor:
    """The UTF-8 bytes each token id stands for (0 for <|endoftext|>, which is a marker, not text).

    Summed over tokens it is the byte length of their decoded text: bits per byte divides by it.
    """
    import torch

    tokenizer = get_tokenizer()
    lengths = [len(tokenizer.decode_single_token_bytes(i)) for i in range(tokenizer.n_vocab)]
    lengths[END_OF_TEXT_ID] = 0
    return torch.tensor(lengths, dtype=torch.int64)


def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """Encode to a (1, n) tensor, as the book does (`<|endoftext|>` allowed)."""
    import torch

    encoded = tokenizer.encode(text, allowed_special={END_OF_TEXT})
    return torch.tensor(encoded).unsqueeze(0)


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: tiktoken.Encoding) -> str:
    import torch

    flat = token_ids.squeeze(0) if isinstance(token_ids, torch.Tensor) else torch.as_tensor(token_ids)
    return tokenizer.decode(flat.tolist())
