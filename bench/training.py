"""Training-step contenders: the engine, the book's textbook model, and transformers.

A step is zero_grad, forward, cross-entropy over every position, backward and
an AdamW step (lr 4e-4, weight decay 0.1), from the same initial weights for
every contender; the output head is untied from the token embedding in all of
them, as in the book. Each contender runs as its own code would:

- engine: GPTModel, `engine.training.loss.calc_loss_batch`, fused AdamW
  (`engine_optimizer`), under bf16 autocast on a GPU.
- textbook: the book's model and its `torch.optim.AdamW(model.parameters(), ...)`,
  in fp32, as the book runs it.
- transformers: GPT2LMHeadModel with its default attention and the fused AdamW
  that its Trainer picks by default, under the same autocast as the engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from engine.training.device import autocast
from engine.training.loss import calc_loss_batch
from engine.training.mfu import training_flops_per_token  # noqa: F401 (the cases count with it)
from engine.model.gpt import GPTModel

from .textbook import TextbookGPT
from .transformers_peer import to_transformers

LR = 4e-4
WEIGHT_DECAY = 0.1


@dataclass
class TrainingContender:
    name: str
    model: torch.nn.Module
    step: Callable[[], float]  # one optimizer step; returns the batch loss
    loss: Callable[[], float]  # the batch loss in eval mode, without a step


def engine_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW fused on the CPU as on CUDA, as engine/trainer.py makes it: torch's default on
    the CPU is a per-tensor loop, 3 to 9 times slower a step for the 124M model (BENCHMARKS.md)."""
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=_fused_adamw(device))


def training_contenders(model: GPTModel, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                        autocast_dtype: torch.dtype | None, names: tuple[str, ...],
                        compile_model: bool = False) -> list[TrainingContender]:
    """Copies of `model` (same weights) ready to step on `batch`, one per name."""
    inputs, targets = batch
    contenders = []
    for name in names:
        if name == "engine":
            ours = copy.deepcopy(model).to(device)
            runnable = torch.compile(ours) if compile_model else ours
            contenders.append(_contender(
                name, ours, engine_optimizer(ours, device), autocast_dtype, device,
                lambda m=runnable: calc_loss_batch(inputs, targets, m, device),
            ))
        elif name == "textbook":
            book = TextbookGPT(model.cfg).to(device)
            book.load_state_dict(model.state_dict())
            # The book's chapter 5: AdamW with torch's defaults apart from lr and decay, fp32.
            optimizer = torch.optim.AdamW(book.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            contenders.append(_contender(name, book, optimizer, None, device,
                                         lambda m=book: _cross_entropy(m(inputs), targets)))
        elif name == "transformers":
            hf = to_transformers(model).to(device)
            params = [p for p in hf.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, fused=_fused_adamw(device))
            contenders.append(_contender(name, hf, optimizer, autocast_dtype, device,
                                         lambda m=hf: _cross_entropy(m(inputs).logits, targets)))
        else:
            raise ValueError(f"unknown training contender {name!r}")
    return contenders


def _contender(name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               autocast_dtype: torch.dtype | None, device: torch.device,
               batch_loss: Callable[[], torch.Tensor]) -> TrainingContender:
    def step() -> float:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, autocast_dtype):
            loss = batch_loss()
        loss.backward()
        optimizer.step()
        return loss.item()

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad(), autocast(device, autocast_dtype):
            value = batch_loss().item()
        model.train()
        return value

    return TrainingContender(name, model, step, eval_loss)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _fused_adamw(device: torch.device) -> bool | None:
    return True if device.type in ("cuda", "cpu") else None
