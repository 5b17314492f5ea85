"""Text generation: the book's greedy loop, sampling, and a token stream.

Every path decodes with a key/value cache: the prompt is run once, then one
token at a time. Once the sequence outgrows the context window the window
slides, every absolute position shifts, and the cache is rebuilt from the
cropped window, which gives exactly what the uncached loop gives.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from engine.model.cuda_graph import GraphedStep, graph_decoding_possible, room_to_capture
from engine.model.gpt import GPTModel, KVCache, StaticKVCache


class _Decoder:
    """Next-token logits for a growing sequence, computed with a key/value cache.

    On a CUDA GPU in eval mode the steps after the first new token replay a CUDA graph
    (engine.model.cuda_graph), captured at the first of them, so that a single token never
    waits for it; elsewhere, or where capturing fails, the model runs step by step.
    """

    def __init__(self, model: GPTModel, idx: torch.Tensor, context_size: int):
        self.model = model
        self.context_size = min(context_size, model.cfg.context_length)
        self.idx = idx
        self.graphable = graph_decoding_possible(model)
        self.cache = (StaticKVCache if self.graphable else KVCache)(model, idx.shape[0], self.context_size)
        self.graph: GraphedStep | None = None

    @torch.no_grad()
    def logits(self) -> torch.Tensor:
        return self.model(self.idx[:, -self.context_size :], kv_cache=self.cache, last_only=True)[:, -1, :]

    @torch.no_grad()
    def append(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Add (batch, 1) tokens and return the logits for the position after them."""
        self.idx = torch.cat((self.idx, next_ids), dim=1)
        if self.cache.length >= self.context_size:
            self.cache.reset()
            return self.logits()
        if self.graph is None and self.graphable and room_to_capture(self.cache):
            try:
                self.graph = GraphedStep(self.model, self.cache)
            except RuntimeError:
                self.graphable = False  # decode step by step; the tokens are the same
        if self.graph is not None:
            return self.graph(next_ids)
        return self.model(next_ids, kv_cache=self.cache, last_only=True)[:, -1, :]


def generate_text_simple(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, context_size: int) -> torch.Tensor:
    """The book's greedy generation: crop to `context_size`, take the most likely token."""
    return generate(model, idx, max_new_tokens, context_size)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None,
                  temperature: float = 0.0) -> torch.Tensor:
    """Apply top-k (before temperature, as the book does), temperature, then top-p."""
    if top_k is not None and top_k > 0:
        top_k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if temperature > 0.0:
        logits = logits / temperature
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token once the tokens before it already reach top_p; the first always stays.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _choose(logits: torch.Tensor, temperature: float, top_k, top_p, generator) -> torch.Tensor:
    logits = filter_logits(logits, top_k, top_p, temperature)
    if temperature > 0.0:
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=generator)
    return torch.argmax(logits, dim=-1, keepdim=True)


def _generator_for(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None  # the global generator, as in the book
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def generate(model: GPTModel, idx: torch.Tensor, max_new_tokens: int, context_size: int,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             eos_id: int | None = None, seed: int | None = None) -> torch.Tensor:
    """The book's `generate`: temperature 0 is greedy; top-k filters before temperature.

    Stops early once every sequence in the batch has produced `eos_id` (which is
    appended, as the book's loop breaks before appending it only for batch 1).
    """
    if max_new_tokens <= 0:
        return idx
    decoder = _Decoder(model, idx, context_size)
    generator = _generator_for(seed, idx.device)
    logits = decoder.logits()
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for step in range(max_new_tokens):
        next_ids = _choose(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            hit = next_ids.squeeze(-1) == eos_id
            if idx.shape[0] == 1 and bool(hit):
                break  # the book stops without appending the end-of-text token
            finished |= hit
        if step == max_new_tokens - 1:
            decoder.idx = torch.cat((decoder.idx, next_ids), dim=1)
            break
        logits = decoder.append(next_ids)
        if eos_id is not None and bool(finished.all()):
            break
    return decoder.idx


@dataclass(frozen=True)
class Alternative:
    """A candidate next token and the probability the model gave it."""

    token_id: int
    text: str
    prob: float


def top_alternatives(probs: torch.Tensor, k: int, tokenizer) -> list[Alternative]:
    """The k most likely tokens of one probability vector, most likely first."""
    values, ids = probs.topk(min(k, probs.shape[-1]))
    return [Alternative(int(i), token_text(tokenizer, int(i)), float(p)) for p, i in zip(values.tolist(), ids.tolist())]


def token_text(tokenizer, token_id: int) -> str:
    """How one token reads on its own (a token holding part of a character shows as U+FFFD)."""
    return tokenizer.decode_single_token_bytes(token_id).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class StreamedToken:
    """One generated token as a front end shows it."""

    index: int  # 0 for the first new token
    token_id: int
    # Text this token completes. Empty while a multi-byte character is still
    # incomplete; the character then arrives whole with the token that ends it.
    text: str
    prob: float  # the model's probability of this token (softmax of its raw logits)
    alternatives: tuple[Alternative, ...]  # the model's most likely tokens at this position


def stream(model: GPTModel, tokenizer, prompt: "str | torch.Tensor", max_new_tokens: int,
           context_size: int | None = None, temperature: float = 0.0, top_k: int | None = None,
           top_p: float | None = None, eos_id: int | None = None, seed: int | None = None,
           n_alternatives: int = 5, should_stop: Callable[[], bool] | None = None) -> Iterator[StreamedToken]:
    """Yield each new token as soon as it is computed (batch of one).

    Stop between any two tokens by leaving the loop, closing the iterator, or
    returning True from `should_stop`. A prompt longer than the context window
    is cropped from the left; an empty prompt starts from `<|endoftext|>`.
    """
    device = model.tok_emb.weight.device
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt, allowed_special="all") or [tokenizer.eot_token]
        idx = torch.tensor([ids], device=device)
    else:
        idx = prompt.to(device).reshape(1, -1)
    context_size = context_size or model.cfg.context_length
    generator = _generator_for(seed, device)
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    was_training = model.training
    model.eval()
    try:
        decoder = _Decoder(model, idx, context_size)  # it crops to the window itself
        logits = decoder.logits()
        for index in range(max_new_tokens):
            if should_stop is not None and should_stop():
                return
            token = int(_choose(logits, temperature, top_k, top_p, generator))
            probs = torch.softmax(logits[0].float(), dim=-1)
            last = index == max_new_tokens - 1 or token == eos_id
            yield StreamedToken(
                index=index,
                token_id=token,
                text=utf8.decode(tokenizer.decode_single_token_bytes(token), final=last),
                prob=float(probs[token]),
                alternatives=tuple(top_alternatives(probs, n_alternatives, tokenizer)),
            )
            if last:
                return
            logits = decoder.append(torch.tensor([[token]], device=device))
    finally:
        model.train(was_training)
