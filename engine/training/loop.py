"""The training loop: the book's `train_model_simple`, grown up.

The loop owns no files. It draws batches, steps the optimizer, evaluates,
samples, and reports everything as events; what to do at a checkpoint is a
callback. Random numbers are drawn exactly where the book draws them, so the
book's run is reproduced number for number (see `train_model_simple`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from engine.insight.health import HealthWatch
from engine.training.device import autocast
from engine.runs.events import EvalDone, Event, SampleGenerated, StepDone
from engine.model.generation import generate_text_simple
from engine.training.loss import calc_loss_and_bpb_loader, calc_loss_batch, calc_loss_loader, perplexity
from engine.training.mfu import mfu
from engine.training.schedule import learning_rate
from engine.model.tokenizer import text_to_token_ids, token_byte_lengths, token_ids_to_text


@dataclass
class LoopSettings:
    epochs: int
    total_steps: int  # optimizer steps after which the run is complete
    eval_freq: int
    eval_iter: int
    lr: float
    warmup_steps: int = 0
    min_lr: float | None = None
    grad_accum_steps: int = 1
    grad_clip: float | None = None
    start_context: str = "Every effort moves you"
    sample_tokens: int = 50
    sample_at_eval: bool = True  # beyond the book, which samples once per epoch
    autocast_dtype: torch.dtype | None = None
    flops_per_token: float | None = None  # training FLOPs per token, for MFU (engine.training.mfu)
    peak_flops: float | None = None  # one device's peak FLOP/s in this precision; None: no MFU


@dataclass
class LoopPosition:
    """Where training stands; enough, with the RNG and optimizer state, to resume exactly."""

    epoch: int = 0
    batches_done: int = 0  # micro-batches consumed in this epoch
    step: int = 0  # optimizer steps taken so far
    tokens_seen: int = 0
    last_val_loss: float | None = None


class NonFiniteLoss(RuntimeError):
    """A loss or gradient was NaN or infinite; the optimizer step was not taken."""


# A default sample (50 tokens) is made in one piece, exactly as before; a long one in several.
SAMPLE_PIECE = 64


def evaluate_model(model, train_loader, val_loader, device, eval_iter, autocast_dtype=None, loss_batch=calc_loss_batch):
    """The book's evaluation: `eval_iter` batches of each loader, in eval mode, without gradients."""
    model.eval()
    with torch.no_grad(), autocast(device, autocast_dtype):
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter, loss_batch=loss_batch)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter, loss_batch=loss_batch)
    model.train()
    return train_loss, val_loss


def evaluate_model_with_bpb(model, train_loader, val_loader, device, eval_iter, autocast_dtype=None,
                            loss_batch=calc_loss_batch):
    """evaluate_model's losses and the bits per byte of the same batches: (train, val, train_bpb, val_bpb)."""
    byte_lengths = token_byte_lengths()
    model.eval()
    with torch.no_grad(), autocast(device, autocast_dtype):
        train_loss, train_bpb = calc_loss_and_bpb_loader(train_loader, model, device, eval_iter, byte_lengths,
                                                         loss_batch=loss_batch)
        val_loss, val_bpb = calc_loss_and_bpb_loader(val_loader, model, device, eval_iter, byte_lengths,
                                                     loss_batch=loss_batch)
    model.train()
    return train_loss, val_loss, train_bpb, val_bpb


def generate_sample(model, tokenizer, device, start_context: str, max_new_tokens: int = 50,
                    should_stop: Callable[[], bool] = lambda: False) -> str:
    """The book's greedy sample; it draws no random numbers.

    Made in pieces of SAMPLE_PIECE tokens (greedy, so the same tokens as in one go), so
    that a stop request cuts a long sample short rather than waiting for its end.
    """
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    token_ids = text_to_token_ids(start_context, tokenizer).to(device)
    with torch.no_grad():
        left = max_new_tokens
        while left > 0 and not should_stop():
            piece = min(SAMPLE_PIECE, left)
            token_ids = generate_text_simple(model, token_ids, piece, context_size)
            left -= piece
    model.train()
    return token_ids_to_text(token_ids, tokenizer)


class TrainingLoop:
    """Runs epochs of optimizer steps from a `LoopPosition` until done or asked to stop.

    `epoch_batches(epoch, skip)` gives the epoch's (input, target) batches after
    the first `skip`; `on_checkpoint(reason)` is called at each point where the
    state is worth saving ("periodic", "stopped", "finished"). `loss_batch` is the
    book's `calc_loss_batch` or a function computing the same value faster.
    """

    def __init__(self, model, optimizer, device, settings: LoopSettings, tokenizer,
                 epoch_batches: Callable[[int, int], Iterable], train_eval_loader, val_loader,
                 emit: Callable[[Event], None], should_stop: Callable[[], bool] = lambda: False,
                 on_checkpoint: Callable[[str], None] | None = None, position: LoopPosition | None = None,
                 raw_model=None, checkpoint_every: int | None = None, checkpoint_minutes: float | None = None,
                 world_size: int = 1, loss_batch: Callable = calc_loss_batch,
                 agree: Callable[[bool], bool] = bool, average: Callable[[float], float] = float):
        self.model = model  # computes the training loss: a DistributedDataParallel wrapper or the model itself
        self.raw_model = raw_model or model  # evaluates and samples
        self.optimizer = optimizer
        self.device = device
        self.s = settings
        self.tokenizer = tokenizer
        self.epoch_batches = epoch_batches
        self.train_eval_loader = train_eval_loader
        self.val_loader = val_loader
        self.emit = emit
        self.should_stop = should_stop
        self._save = on_checkpoint or (lambda reason: None)
        self.pos = position or LoopPosition()
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_minutes * 60 if checkpoint_minutes else None
        self._last_checkpoint = time.monotonic()
        self.world_size = world_size  # ranks whose batches make up one step
        self.agree = agree  # across ranks: stop if any rank was asked to
        self.average = average  # across ranks: mean of an evaluation loss
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._sampled_step: int | None = None
        self.health = HealthWatch(self.raw_model, settings.eval_freq, emit)  # loss spikes, update ratios
        self.loss_batch = loss_batch

    def on_checkpoint(self, reason: str) -> None:
        self._save(reason)
        self._last_checkpoint = time.monotonic()

    @property
    def done(self) -> bool:
        return self.pos.step >= self.s.total_steps or self.pos.epoch >= self.s.epochs

    def run(self) -> str:
        """Train until done ("finished") or asked to stop ("stopped", after a checkpoint)."""
        self.model.train()
        while not self.done:
            if self._run_epoch() == "stopped":
                return "stopped"
        self._sample()  # a run cut short by max_steps still shows where it ended
        self.on_checkpoint("finished")
        return "finished"

    def _run_epoch(self) -> str:
        s, pos = self.s, self.pos
        accumulated = step_tokens = 0
        step_loss = None  # the sum of this step's micro-batch losses, kept on the device until the step
        step_start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for input_batch, target_batch in self.epoch_batches(pos.epoch, pos.batches_done):
            pos.batches_done += 1
            accumulated += 1
            step_tokens += input_batch.numel()
            final_micro_batch = accumulated == s.grad_accum_steps
            # DDP all-reduces the gradients in backward; the micro-batches before the last only accumulate.
            with (contextlib.nullcontext() if final_micro_batch else self._no_sync()):
                with autocast(self.device, s.autocast_dtype):
                    loss = self.loss_batch(input_batch, target_batch, self.model, self.device)
                (loss / s.grad_accum_steps if s.grad_accum_steps > 1 else loss).backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
            if not final_micro_batch:
                continue
            step = pos.step
            self._optimizer_step(step_loss.item() / s.grad_accum_steps, step_tokens, step_start)
            accumulated = step_tokens = 0
            step_loss = None
            if step % s.eval_freq == 0:
                self._evaluate(step)
            if self.done:
                return "done"
            if self.agree(self.should_stop()):
                self.on_checkpoint("stopped")
                return "stopped"
            if self._periodic_checkpoint_due():
                self.on_checkpoint("periodic")
            step_start = time.perf_counter()
        # The epoch ran out of batches (a partial gradient accumulation is dropped).
        self._sample()  # the book samples once per epoch
        pos.epoch += 1
        pos.batches_done = 0
        if self.done:
            return "done"
        if self.agree(self.should_stop()):
            self.on_checkpoint("stopped")
            return "stopped"
        return "epoch"

    def _no_sync(self):
        """DistributedDataParallel's `no_sync`; a model on one process has nothing to synchronize."""
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if no_sync else contextlib.nullcontext()

    def _periodic_checkpoint_due(self) -> bool:
        by_steps = bool(self.checkpoint_every) and self.pos.step % self.checkpoint_every == 0
        by_time = self.checkpoint_seconds is not None and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        # Ranks must agree: saving gathers every rank's RNG state.
        return by_steps or self.agree(by_time)

    def _optimizer_step(self, loss_value: float, step_tokens: int, step_start: float) -> None:
        s, pos = self.s, self.pos
        self.health.before_step(pos.step, loss_value)
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads)
        grad_norm_value = float(grad_norm)
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm_value)):
            what = "loss" if not math.isfinite(loss_value) else "gradient"
            raise NonFiniteLoss(
                f"non-finite {what} at step {pos.step}; the step was not applied and no weights were written "
                "(try a lower --lr or set --grad-clip)"
            )
        if s.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, s.grad_clip, grad_norm)
        lr = learning_rate(pos.step, s.lr, s.total_steps, s.warmup_steps, s.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.health.after_step(pos.step)
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        step_time = time.perf_counter() - step_start
        tokens = step_tokens * self.world_size
        pos.tokens_seen += tokens
        tokens_per_sec = tokens / step_time if step_time > 0 else 0.0
        self.emit(StepDone(
            step=pos.step, epoch=pos.epoch, tokens_seen=pos.tokens_seen, loss=loss_value, lr=lr,
            tokens_per_sec=tokens_per_sec, step_time=step_time, grad_norm=grad_norm_value,
            mfu=mfu(tokens_per_sec, s.flops_per_token, s.peak_flops, self.world_size) if s.flops_per_token else None,
        ))
        pos.step += 1

    def _evaluate(self, step: int) -> None:
        train_loss, val_loss, train_bpb, val_bpb = (self.average(value) for value in evaluate_model_with_bpb(
            self.raw_model, self.train_eval_loader, self.val_loader, self.device, self.s.eval_iter, self.s.autocast_dtype,
            self.loss_batch,
        ))
        self.pos.last_val_loss = val_loss
        self.emit(EvalDone(
            step=step, epoch=self.pos.epoch, tokens_seen=self.pos.tokens_seen, train_loss=train_loss,
            val_loss=val_loss, train_ppl=perplexity(train_loss), val_ppl=perplexity(val_loss),
            train_bpb=train_bpb, val_bpb=val_bpb,
        ))
        if self.s.sample_at_eval:
            self._sample()

    def _sample(self) -> None:
        """A greedy sample for the latest step, once per step."""
        step = self.pos.step - 1
        if self.s.sample_tokens <= 0 or step < 0 or self._sampled_step == step:
            return
        self._sampled_step = step
        text = generate_sample(self.raw_model, self.tokenizer, self.device, self.s.start_context, self.s.sample_tokens,
                               self.should_stop)
        self.emit(SampleGenerated(
            step=step, epoch=self.pos.epoch, tokens_seen=self.pos.tokens_seen, prompt=self.s.start_context, text=text,
        ))


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter,
                       start_context, tokenizer):
    """The book's training function, with its signature, printout and return values.

    Returns (train_losses, val_losses, track_tokens_seen) for the evaluations.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []

    def report(event: Event) -> None:
        if isinstance(event, EvalDone):
            train_losses.append(event.train_loss)
            val_losses.append(event.val_loss)
            track_tokens_seen.append(event.tokens_seen)
            print(f"Ep {event.epoch + 1} (Step {event.step:06d}): "
                  f"Train loss {event.train_loss:.3f}, Val loss {event.val_loss:.3f}")
        elif isinstance(event, SampleGenerated):
            print(event.text.replace("\n", " "))

    settings = LoopSettings(
        epochs=num_epochs, total_steps=num_epochs * len(train_loader), eval_freq=eval_freq, eval_iter=eval_iter,
        lr=optimizer.param_groups[0]["lr"], start_context=start_context, sample_at_eval=False,
    )
    device = torch.device(device)
    TrainingLoop(model, optimizer, device, settings, tokenizer, lambda epoch, skip: train_loader,
                 train_loader, val_loader, emit=report).run()
    return train_losses, val_losses, track_tokens_seen
