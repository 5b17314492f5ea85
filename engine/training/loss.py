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
    return calc_loss_and_bpb_loader(data_loader, model, device, num_batches, loss_batch=loss_batch)[0]


def calc_loss_and_bpb_loader(data_loader: DataLoader, model: torch.nn.Module, device, num_batches: int | None = None,
                             byte_lengths: torch.Tensor | None = None, *,
                             loss_batch=calc_loss_batch) -> tuple[float, float]:
    """calc_loss_loader's mean loss, and bits per byte over the same batches (nan without `byte_lengths`).

    Bits per byte: the loss in nats summed over the target tokens / ln 2 / the UTF-8 bytes
    those tokens decode to (`byte_lengths[id]` each), which compares across tokenizers.
    """
    if len(data_loader) == 0:
        return float("nan"), float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    if num_batches == 0:
        return float("nan"), float("nan")
    total_loss = total_nats = 0.0
    total_bytes = 0
    # Iterate and break, as the book does: starting the iterator draws from torch's global
    # RNG (a shuffling loader's seed), and training relies on drawing exactly what the book draws.
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        loss = loss_batch(input_batch, target_batch, model, device).item()
        total_loss += loss
        if byte_lengths is not None:
            total_nats += loss * target_batch.numel()
            total_bytes += int(byte_lengths[target_batch].sum())
    return total_loss / num_batches, bits_per_byte(total_nats, total_bytes)


def bits_per_byte(nats: float, n_bytes: int) -> float:
    """Summed loss in nats as bits per byte of text; nan when there are no bytes."""
    return nats / math.log(2) / n_bytes if n_bytes else float("nan")


def perplexity(loss: float) -> float:
    """exp(loss): inf when it overflows, nan for nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
