"""Training health: how big each update is next to its weights, and loss spikes.

The update-to-weight ratio |w_after - w_before| / |w_before| per parameter tensor
is the step's actual change (learning rate, optimizer scaling and all) relative
to the weights; around 1e-3 is the usual healthy order. It needs a copy of the
weights before the step, so the training loop takes it only at evaluations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import torch


def snapshot_weights(named_parameters: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights, to measure the next update against."""
    return {name: p.detach().clone() for name, p in named_parameters if p.requires_grad}


@torch.no_grad()
def update_to_weight_ratios(named_parameters: Iterable[tuple[str, torch.Tensor]],
                            before: dict[str, torch.Tensor]) -> dict[str, float]:
    """|w - w_before| / |w_before| (Frobenius norms) for each tensor in `before`."""
    ratios = {}
    for name, p in named_parameters:
        if name in before:
            old = before[name].float()
            norm = old.norm().item()
            ratios[name] = (p.detach().float() - old).norm().item() / norm if norm else math.inf
    return ratios


@dataclass(frozen=True)
class Spike:
    loss: float
    mean: float  # of the recent losses
    std: float
    reason: str  # "non-finite" or "spike"


class LossSpikeDetector:
    """Flags a loss far outside the recent spread (mean + `threshold` std of the last `window`), or non-finite.

    Nothing is flagged until `min_history` losses were seen; a flagged loss is not
    added to the history, so one spike does not hide the next.
    """

    def __init__(self, window: int = 50, threshold: float = 6.0, min_history: int = 10):
        self.threshold = threshold
        self.min_history = min_history
        self._recent: deque[float] = deque(maxlen=window)

    def observe(self, loss: float) -> Spike | None:
        if not math.isfinite(loss):
            return Spike(loss, *self._spread(), reason="non-finite")
        mean, std = self._spread()
        if len(self._recent) >= self.min_history and loss > mean + self.threshold * max(std, 1e-3 * abs(mean)):
            return Spike(loss, mean, std, reason="spike")
        self._recent.append(loss)
        return None

    def _spread(self) -> tuple[float, float]:
        if not self._recent:
            return math.nan, math.nan
        mean = sum(self._recent) / len(self._recent)
        return mean, math.sqrt(sum((x - mean) ** 2 for x in self._recent) / len(self._recent))
