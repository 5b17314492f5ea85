"""Training health: how big each update is next to its weights, and loss spikes.

The update-to-weight ratio |w_after - w_before| / |w_before| per parameter tensor
is the step's actual change (learning rate, optimizer scaling and all) relative
to the weights; around 1e-3 is the usual healthy order. It needs a copy of the
weights before the step, so the training loop takes it only at evaluations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from engine.runs.events import Event, LossSpike, UpdateRatios


def snapshot_weights(named_parameters: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights, to measure the next update against."""
    return {name: p.detach().clone() for name, p in named_parameters if p.requires_grad}


@torch.no_grad()
def update_to_weight_ratios(named_parameters: Iterable[tuple[str, torch.Tensor]],
                            before: dict[str, torch.Tensor]) -> dict[str, float]:
    """|w - w_before| / |w_before| (Frobenius norms) for each tensor in `before`.

    Tensors that were all zeros before (a fresh bias) have no ratio and are left out.
    """
    ratios = {}
    for name, p in named_parameters:
        if name in before:
            old = before[name].float()
            norm = _whole_norm(old)
            if norm:
                ratios[name] = _whole_norm(p.detach().float() - old) / norm
    return ratios


def _whole_norm(tensor: torch.Tensor) -> float:
    """The Frobenius norm of the whole tensor, also of an FSDP-sharded one (a DTensor).

    A sharded tensor's norm is a partial result, and its `.item()` is this rank's part alone.
    """
    norm = tensor.norm()
    return (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()


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


class HealthWatch:
    """What the training loop calls around each optimizer step to report health events.

    Every step's loss goes through a LossSpikeDetector; at steps that are evaluated
    (`step % eval_freq == 0`) the weights are copied before the update and the
    update-to-weight ratios emitted after it.
    """

    def __init__(self, model: torch.nn.Module, eval_freq: int, emit: Callable[[Event], None],
                 detector: LossSpikeDetector | None = None):
        self.model = model
        self.eval_freq = eval_freq
        self.emit = emit
        self.detector = detector or LossSpikeDetector()
        self._before: dict[str, torch.Tensor] | None = None

    def before_step(self, step: int, loss: float) -> None:
        spike = self.detector.observe(loss)
        if spike is not None:
            self.emit(LossSpike(step=step, loss=spike.loss, recent_mean=spike.mean, recent_std=spike.std,
                                reason=spike.reason))
        if self.eval_freq and step % self.eval_freq == 0:
            self._before = snapshot_weights(self.model.named_parameters())

    def after_step(self, step: int) -> None:
        if self._before is not None:
            ratios = update_to_weight_ratios(self.model.named_parameters(), self._before)
            self._before = None
            self.emit(UpdateRatios(step=step, ratios=ratios))
