"""Token ids of a text and how each one reads, shared by every insight view."""

from __future__ import annotations

import torch

from engine.errors import ConfigError
from engine.model import generation
from engine.model.generation import Alternative
from engine.model.tokenizer import END_OF_TEXT, get_tokenizer


def encode(text: str, tokenizer=None) -> list[int]:
    """The text's token ids; ConfigError for a text with no tokens."""
    tokenizer = tokenizer or get_tokenizer()
    ids = tokenizer.encode(text, allowed_special={END_OF_TEXT})
    if not ids:
        raise ConfigError("the text is empty: there is nothing to look at")
    return ids


def token_text(token_id: int, tokenizer=None) -> str:
    """How one token reads on its own (a token holding part of a character shows as U+FFFD)."""
    return generation.token_text(tokenizer or get_tokenizer(), token_id)


def token_bytes(token_id: int, tokenizer=None) -> int:
    """UTF-8 bytes the token stands for, the unit of bits per byte."""
    return len((tokenizer or get_tokenizer()).decode_single_token_bytes(token_id))


def top_alternatives(probs: torch.Tensor, k: int, tokenizer=None) -> list[Alternative]:
    """The k most likely tokens of one probability vector, most likely first."""
    return generation.top_alternatives(probs, k, tokenizer or get_tokenizer())


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_vocabulary(model: torch.nn.Module, ids: list[int]) -> None:
    """ConfigError when the text has tokens the model has no embedding for."""
    vocab = model.cfg.vocab_size
    if max(ids) >= vocab:
        raise ConfigError(f"the text has token id {max(ids)}, outside the model's vocabulary of {vocab}")
