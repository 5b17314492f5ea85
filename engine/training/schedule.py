"""Learning-rate schedule: linear warmup, then constant or cosine decay to a floor."""

from __future__ import annotations

import math


def learning_rate(step: int, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float | None = None) -> float:
    """The rate for optimizer step `step` (0-based).

    With no warmup and no `min_lr` this is the book's constant rate.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if min_lr is None:
        return lr
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
