"""Score a text: for each token, how likely the model found it given what came before.

Texts longer than the context window are read in sliding windows of the model's
context length. The first window scores every token it can; each later window
advances by `stride` tokens and scores only those new tokens, so every token is
scored once, with at least `context_length - stride` tokens of context, and each
window costs one forward pass. The first token has nothing before it and is not
scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from engine.insight.tokens import (
    Alternative, check_vocabulary, encode, model_device, token_bytes, token_text, top_alternatives,
)
from engine.training.loss import perplexity


@dataclass(frozen=True)
class Window:
    """One forward pass: inputs `ids[start:end]`, scoring the targets at positions `scored_from..end`."""

    start: int
    end: int
    scored_from: int


@dataclass(frozen=True)
class TokenScore:
    position: int  # index of the token in the text's ids
    token_id: int
    text: str
    prob: float  # the model's probability of this token
    rank: int  # 1 = the model's top choice
    loss: float  # -ln(prob), nats
    context: int  # tokens before it that the model saw
    alternatives: tuple[Alternative, ...] = ()


@dataclass(frozen=True)
class TextScore:
    ids: list[int]
    tokens: list[TokenScore]  # one per scored token: positions 1..len(ids)-1
    windows: list[Window] = field(default_factory=list)

    @property
    def total_nats(self) -> float:
        return sum(t.loss for t in self.tokens)

    @property
    def mean_loss(self) -> float:
        return self.total_nats / len(self.tokens) if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return perplexity(self.mean_loss)

    @property
    def scored_bytes(self) -> int:
        return sum(token_bytes(t.token_id) for t in self.tokens)

    @property
    def bits_per_byte(self) -> float:
        n_bytes = self.scored_bytes
        return self.total_nats / math.log(2) / n_bytes if n_bytes else float("nan")

    def totals(self) -> dict[str, float | int]:
        return {"tokens": len(self.ids), "scored_tokens": len(self.tokens), "scored_bytes": self.scored_bytes,
                "mean_loss": self.mean_loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte,
                "windows": len(self.windows)}


def plan_windows(n_tokens: int, context_length: int, stride: int | None = None) -> list[Window]:
    """The windows that score tokens 1..n_tokens-1 once each (see the module docstring)."""
    stride = stride or max(1, context_length // 2)
    if not 1 <= stride <= context_length:
        raise ValueError(f"stride must be in 1..{context_length}, got {stride}")
    last = n_tokens - 1  # the last input position needed: inputs end before the last target
    if last < 1:
        return []
    end = min(context_length, last)
    windows = [Window(0, end, 0)]
    while end < last:
        new_end = min(end + stride, last)
        windows.append(Window(max(0, new_end - context_length), new_end, end))
        end = new_end
    return windows


@torch.no_grad()
def score_ids(model, ids: list[int], top_k: int = 5, stride: int | None = None, batch_windows: int = 1) -> TextScore:
    """Score token ids with `model` (a GPTModel); `batch_windows` windows share each forward call."""
    check_vocabulary(model, ids)
    windows = plan_windows(len(ids), model.cfg.context_length, stride)
    device = model_device(model)
    all_ids = torch.tensor(ids, device=device)
    was_training = model.training
    model.eval()
    tokens: list[TokenScore] = []
    try:
        for group in _same_length_groups(windows, batch_windows):
            inputs = torch.stack([all_ids[w.start:w.end] for w in group])
            logits = model(inputs).float()
            for row, w in zip(logits, group):
                tokens.extend(_score_window(row, all_ids, w, top_k))
    finally:
        model.train(was_training)
    return TextScore(ids=list(ids), tokens=tokens, windows=windows)


def score_text(model, text: str, top_k: int = 5, stride: int | None = None, batch_windows: int = 1) -> TextScore:
    return score_ids(model, encode(text), top_k=top_k, stride=stride, batch_windows=batch_windows)


def _same_length_groups(windows: list[Window], size: int):
    group: list[Window] = []
    for w in windows:
        if group and (len(group) == size or group[0].end - group[0].start != w.end - w.start):
            yield group
            group = []
        group.append(w)
    if group:
        yield group


def _score_window(logits: torch.Tensor, all_ids: torch.Tensor, w: Window, top_k: int) -> list[TokenScore]:
    """Scores of the targets w.scored_from+1..w.end from one window's logits (length end-start)."""
    first = w.scored_from - w.start  # row of the first new prediction
    rows = logits[first:]
    targets = all_ids[w.scored_from + 1:w.end + 1]
    log_probs = torch.log_softmax(rows, dim=-1)
    target_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    target_logits = rows.gather(-1, targets.unsqueeze(-1))
    ranks = (rows > target_logits).sum(-1) + 1
    probs = log_probs.exp()
    scores = []
    for i, (lp, rank, target) in enumerate(zip(target_log_probs.tolist(), ranks.tolist(), targets.tolist())):
        position = w.scored_from + 1 + i
        alternatives = tuple(top_alternatives(probs[i], top_k)) if top_k else ()
        scores.append(TokenScore(position=position, token_id=target, text=token_text(target), prob=math.exp(lp),
                                 rank=rank, loss=-lp, context=position - w.start, alternatives=alternatives))
    return scores
