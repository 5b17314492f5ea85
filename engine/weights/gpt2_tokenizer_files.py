"""GPT-2's tokenizer in the form other tools read it: byte-level token strings and BPE merges.

tiktoken keeps the tokenizer as ranks of byte strings; Hugging Face (vocab.json
+ merges.txt) and GGUF (tokenizer.ggml.tokens / .merges) keep it as printable
token strings plus the list of merges, in rank order. Both are derived here
from the bundled ranks, so no file is downloaded:

- a token's string spells its bytes with GPT-2's byte-to-character table,
  which maps the printable bytes to themselves and the rest to code points
  from 256 upward, so that every byte has a visible, non-space character;
- the merge that made the token of rank r is found by running byte-pair
  encoding on its bytes with only the ranks below r: what remains are the two
  tokens it was merged from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.model.tokenizer import END_OF_TEXT, END_OF_TEXT_ID, get_tokenizer

VOCAB_SIZE = END_OF_TEXT_ID + 1  # the 50,256 merged byte strings, then <|endoftext|>
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class Gpt2Vocabulary:
    tokens: tuple[str, ...]  # by token id, <|endoftext|> last
    merges: tuple[str, ...]  # "left right", in the order BPE applies them (token 256 + i comes from merge i)


def byte_characters() -> list[str]:
    """GPT-2's character for each byte value 0..255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            characters[byte] = chr(byte)
        else:
            characters[byte] = chr(256 + shifted)
            shifted += 1
    return [characters[byte] for byte in range(256)]


@lru_cache(maxsize=1)
def gpt2_vocabulary() -> Gpt2Vocabulary:
    """Token strings and merges of GPT-2, derived from the bundled tiktoken ranks (about a second)."""
    encoding = get_tokenizer()
    token_bytes = [encoding.decode_single_token_bytes(i) for i in range(END_OF_TEXT_ID)]
    ranks = {data: rank for rank, data in enumerate(token_bytes)}
    characters = byte_characters()

    def spell(data: bytes) -> str:
        return "".join(characters[b] for b in data)

    merges = []
    for rank, data in enumerate(token_bytes):
        if len(data) == 1:
            continue
        left, right = _last_merge(data, ranks, rank)
        merges.append(f"{spell(left)} {spell(right)}")
    return Gpt2Vocabulary(tuple(spell(data) for data in token_bytes) + (END_OF_TEXT,), tuple(merges))


def _last_merge(data: bytes, ranks: dict[bytes, int], below: int) -> tuple[bytes, bytes]:
    """The two parts BPE joins last to make `data`, using only merges ranked below `below`."""
    parts = [data[i:i + 1] for i in range(len(data))]
    while len(parts) > 2:
        best_rank, best_at = below, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1], below)
            if rank < best_rank:
                best_rank, best_at = rank, i
        if best_at < 0:
            break
        parts[best_at:best_at + 2] = [parts[best_at] + parts[best_at + 1]]
    if len(parts) != 2:
        raise AssertionError(f"token {data!r} of rank {below} is not the merge of two lower-ranked tokens")
    return parts[0], parts[1]


def write_tokenizer_files(folder: Path, model_max_length: int) -> None:
    """The Hugging Face files of GPT-2's tokenizer (GPT2Tokenizer), into `folder`."""
    vocabulary = gpt2_vocabulary()
    vocab = {token: token_id for token_id, token in enumerate(vocabulary.tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # The header line is part of the format: readers skip the first line.
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(vocabulary.merges) + "\n", encoding="utf-8")
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "add_bos_token": False,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
