"""Two models on the same text: where the second does better or worse than the first, token by token."""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError
from engine.insight.scoring import TextScore, score_ids
from engine.insight.tokens import encode


@dataclass(frozen=True)
class TokenDiff:
    position: int
    text: str
    loss_a: float
    loss_b: float

    @property
    def delta(self) -> float:
        """loss_b - loss_a: negative where model B is better."""
        return self.loss_b - self.loss_a

    def as_dict(self) -> dict:
        return {"position": self.position, "text": self.text, "loss_a": self.loss_a, "loss_b": self.loss_b,
                "delta": self.delta}


@dataclass(frozen=True)
class Comparison:
    a: TextScore
    b: TextScore
    diffs: list[TokenDiff]

    def most_improved(self, n: int = 10) -> list[TokenDiff]:
        return [d for d in sorted(self.diffs, key=lambda d: d.delta)[:n] if d.delta < 0]

    def most_worsened(self, n: int = 10) -> list[TokenDiff]:
        return [d for d in sorted(self.diffs, key=lambda d: -d.delta)[:n] if d.delta > 0]

    @property
    def mean_delta(self) -> float:
        return self.b.mean_loss - self.a.mean_loss


def check_same_vocabulary(model_a, model_b) -> None:
    va, vb = model_a.cfg.vocab_size, model_b.cfg.vocab_size
    if va != vb:
        raise ConfigError(f"the models have different vocabularies ({va} and {vb} tokens); they cannot be compared")


def compare_ids(model_a, model_b, ids: list[int], stride: int | None = None, top_k: int = 5) -> Comparison:
    check_same_vocabulary(model_a, model_b)
    a = score_ids(model_a, ids, top_k=top_k, stride=stride)
    b = score_ids(model_b, ids, top_k=top_k, stride=stride)
    diffs = [TokenDiff(ta.position, ta.text, ta.loss, tb.loss) for ta, tb in zip(a.tokens, b.tokens)]
    return Comparison(a, b, diffs)


def compare_models(model_a, model_b, text: str, stride: int | None = None, top_k: int = 5) -> Comparison:
    return compare_ids(model_a, model_b, encode(text), stride=stride, top_k=top_k)
