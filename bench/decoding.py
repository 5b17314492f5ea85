"""Greedy-decoding contenders and the checks that they produce the same tokens.

Every contender continues the same prompt greedily for the same number of
tokens and never stops early. The fp32 contenders must produce identical
tokens. A reduced-precision engine copy may pick another token where two are
nearly tied, which then changes everything after it; it is checked position
by position instead: over a sequence, how often its most likely next token is
the fp32 model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from engine.fast.decoding_weights import decoding_copy
from engine.model.generation import generate, stream
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer

from .textbook import TextbookGPT, textbook_generate_text_simple
from .transformers_peer import to_transformers, transformers_generate


@dataclass
class DecodingContender:
    name: str
    generate: Callable[[torch.Tensor, int], torch.Tensor]  # (prompt ids, new tokens) -> all ids
    first_token: Callable[[torch.Tensor], int]  # prompt ids -> the first new token
    model: torch.nn.Module
    exact: bool  # expected to give exactly the fp32 tokens
    note: str = ""


NOTES = {
    "engine": "generate() on the model itself",
    "engine-fp32": "decoding copy: fp32, input-major blocks, one per core",
    "engine-bf16": "decoding copy: bf16 weights",
    "engine-int8": "decoding copy: int8 weights, bf16 activations",
    "textbook": "the book's generate_text_simple, no cache",
    "transformers": "generate(use_cache=True), greedy",
}


def decoding_contenders(model: GPTModel, names: tuple[str, ...]) -> list[DecodingContender]:
    """Contenders built from `model`'s weights, by name (the keys of NOTES)."""
    model = model.eval()
    context = model.cfg.context_length
    tokenizer = get_tokenizer()
    contenders = []
    for name in names:
        if name == "engine" or name.startswith("engine-"):
            weights = name.rsplit("-", 1)[1] if name.startswith("engine-") else None
            ours = model if weights is None else decoding_copy(model, weights)
            contenders.append(DecodingContender(
                name, lambda idx, n, m=ours: generate(m, idx, n, context),
                lambda idx, m=ours: next(stream(m, tokenizer, idx, 1)).token_id,
                ours, exact=weights in (None, "fp32"), note=NOTES[name],
            ))
        elif name == "textbook":
            book = TextbookGPT(model.cfg).to(model.tok_emb.weight.device).eval()
            book.load_state_dict(model.state_dict())
            contenders.append(DecodingContender(
                name, lambda idx, n, m=book: textbook_generate_text_simple(m, idx, n, context),
                lambda idx, m=book: int(textbook_generate_text_simple(m, idx, 1, context)[0, -1]),
                book, exact=True, note=NOTES[name],
            ))
        elif name == "transformers":
            hf = to_transformers(model).eval()
            contenders.append(DecodingContender(
                name, lambda idx, n, m=hf: transformers_generate(m, idx, n),
                lambda idx, m=hf: int(transformers_generate(m, idx, 1)[0, -1]),
                hf, exact=True, note=NOTES[name],
            ))
        else:
            raise ValueError(f"unknown decoding contender {name!r}")
    return contenders


def top1_agreement(model: torch.nn.Module, reference: torch.nn.Module, tokens: torch.Tensor) -> float:
    """Fraction of the positions of `tokens` where both models' most likely next token is the same."""
    with torch.no_grad():
        return float((model(tokens).argmax(dim=-1) == reference(tokens).argmax(dim=-1)).float().mean())


def weight_bytes_per_token(model: torch.nn.Module) -> int:
    """Bytes of weights one decoding step reads: every matrix whole, one row of an embedding."""
    read: dict[int, int] = {}
    for module in model.modules():
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            looked_up = isinstance(module, torch.nn.Embedding)
            elements = tensor.shape[-1] if looked_up else tensor.numel()
            # A tied output head reads the embedding matrix whole.
            read[id(tensor)] = max(read.get(id(tensor), 0), elements * tensor.element_size())
    return sum(read.values())
