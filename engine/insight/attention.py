"""Attention maps: each layer's and head's weights over the tokens of a text.

The model computes attention with `scaled_dot_product_attention`, which never
materialises the weights, so they are recomputed here from each block's
`W_query` and `W_key` applied to the block's attention input (captured with a
forward pre-hook): softmax(Q K^T / sqrt(head_dim) + causal mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.insight.tokens import check_vocabulary, encode, model_device, token_text

# What a head mostly attends to, by the share of attention it gives there.
LOOKS_AT = ("previous", "first", "self")


@dataclass(frozen=True)
class HeadSummary:
    layer: int  # 1-based
    head: int  # 1-based
    entropy: float  # mean over query positions of the weights' entropy, bits
    previous: float  # mean weight on the token just before
    first: float  # mean weight on the first token
    same: float  # mean weight on the token itself (queries after the first, as for the others)
    looks_at: str  # "previous", "first", "self", or "spread" when none of them takes half

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AttentionMaps:
    ids: list[int]  # the tokens looked at (the first context_length of the text)
    tokens: list[str]
    weights: torch.Tensor  # (layers, heads, queries, keys), each row sums to 1
    truncated: bool = False

    def summaries(self) -> list[HeadSummary]:
        return [summarize_head(self.weights[layer, head], layer + 1, head + 1)
                for layer in range(self.weights.shape[0]) for head in range(self.weights.shape[1])]


def causal_attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) with future keys masked; q, k: (..., tokens, head_dim)."""
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])
    future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)


def block_attention_weights(att, x: torch.Tensor) -> torch.Tensor:
    """The weights of one MultiHeadAttention module for its input x (batch, tokens, emb): (batch, heads, t, t)."""
    return causal_attention_weights(att._heads(att.W_query(x)), att._heads(att.W_key(x)))


@torch.no_grad()
def attention_maps_ids(model, ids: list[int]) -> AttentionMaps:
    check_vocabulary(model, ids)
    truncated = len(ids) > model.cfg.context_length
    ids = ids[:model.cfg.context_length]
    inputs: list[torch.Tensor] = []
    hooks = [block.att.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
             for block in model.trf_blocks]
    was_training = model.training
    model.eval()
    try:
        model(torch.tensor([ids], device=model_device(model)), last_only=True)
        weights = torch.stack([block_attention_weights(block.att, x)[0]
                               for block, x in zip(model.trf_blocks, inputs)]).float().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return AttentionMaps(ids=list(ids), tokens=[token_text(i) for i in ids], weights=weights, truncated=truncated)


def attention_maps(model, text: str) -> AttentionMaps:
    return attention_maps_ids(model, encode(text))


def summarize_head(weights: torch.Tensor, layer: int, head: int) -> HeadSummary:
    """Summary of one head's (t, t) weights."""
    t = weights.shape[0]
    entropy = -(weights * torch.log2(weights.clamp_min(1e-12))).sum(-1).mean().item()
    # The first query can only look at itself, so it says nothing about where a head looks.
    same = weights.diagonal()[1:].mean().item() if t > 1 else 1.0
    previous = weights.diagonal(-1).mean().item() if t > 1 else 0.0
    first = weights[1:, 0].mean().item() if t > 1 else 0.0
    shares = {"previous": previous, "first": first, "self": same}
    best = max(LOOKS_AT, key=shares.__getitem__)
    looks_at = best if shares[best] >= 0.5 else "spread"
    return HeadSummary(layer, head, entropy, previous, first, same, looks_at)
