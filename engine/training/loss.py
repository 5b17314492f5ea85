"""The book's chapter 5 loss: next-token cross-entropy over a batch or a loader."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader


def calc_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: torch.nn.Module, device) -> torch.Tensor:
    """Mean cross-entropy of the model's next-token logits against the targets."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model(input_batch)
    return F.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader: DataLoader, model: torch.nn.Module, device, num_batches: int | None = None, *,
                     loss_batch=calc_loss_batch) -> float:
    """Mean batch loss over the first num_batches batches (all by default); nan for an empty loader.

    `loss_batch` computes one batch's loss: the book's `calc_loss_batch`, or a function that
    computes the same value faster (engine.fast.chunked_loss).
    """
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    if num_batches == 0:
        return float("nan")
    total_loss = 0.0
    # Iterate and break, as the book does: starting the iterator draws from torch's global
    # RNG (a shuffling loader's seed), and training relies on drawing exactly what the book draws.
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total_loss += loss_batch(input_batch, target_batch, model, device).item()
    return total_loss / num_batches


def perplexity(loss: float) -> float:
    """exp(loss): inf when it overflows, nan for nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
