"""Shared helpers of the TUI tests: waiting on the app, and run folders made without training."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

from engine.training.checkpointing import save_checkpoint
from engine.model.config import GPTConfig
from engine.runs.events import (
    EvalDone,
    MetricsWriter,
    RunEnded,
    RunStarted,
    SampleGenerated,
    StepDone,
    UpdateRatios,
)
from engine.model.gpt import GPTModel
from engine.runs.store import RunStore
from tui_gpt.app.app import TuiGptApp

TINY = GPTConfig(context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
# A fixed moment (2025-01-02 03:04 UTC) for files whose times the runs pane shows.
FIXED_TIME = 1735787040


def shown_text(widget) -> str:
    """What the widget shows on screen now, line by line."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `condition()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await pilot.pause(0.05)


async def wait_until_ready(pilot, app: TuiGptApp) -> None:
    """The engine is loaded and the prompt pane has a model."""
    prompt = app.query_one("#prompt-pane")
    await wait_for(pilot, lambda: app.session is not None, what="the engine")
    await wait_for(pilot, lambda: prompt.loaded is not None and prompt.pending_choice is None, what="a model")
    await pilot.pause()


def make_run(data_dir: Path, name: str, evals: int = 3, state: str = "stopped", with_checkpoint: bool = True,
             seed: int = 0) -> Path:
    """A run folder as a trainer leaves it: config, metrics, status and (optionally) a checkpoint.

    The losses fall steadily so plots have a shape, and so do the gradient norm and
    the update-to-weight ratios; nothing here is random or timed.
    """
    store = RunStore(data_dir)
    run = store.create(name, {"model": TINY.to_dict(), "train": {}, "preset": "gpt-nano",
                              "corpus": {"path": None, "name": "demo"}})
    steps = evals * 10
    parameter_names = [name for name, _ in GPTModel(TINY).named_parameters()]
    writer = MetricsWriter(run.metrics_path)
    writer.write(RunStarted(run=name, resumed=False, step=0, total_steps=steps,
                            n_params=GPTModel(TINY).num_parameters(), device="cpu", time=FIXED_TIME))
    for index in range(evals):
        step = index * 10 + 9
        train_loss, val_loss = 10.0 - 1.5 * index - 0.1 * seed, 10.2 - 1.2 * index - 0.1 * seed
        writer.write(StepDone(step=step, epoch=0, tokens_seen=(step + 1) * 64, loss=train_loss, lr=4e-4,
                              tokens_per_sec=1000.0, step_time=0.064, grad_norm=2.0 / (index + 1), time=FIXED_TIME))
        writer.write(UpdateRatios(step=step, ratios={name: 1e-3 * (1 + i % 4) / (index + 1)
                                                     for i, name in enumerate(parameter_names)}, time=FIXED_TIME))
        writer.write(EvalDone(step=step, epoch=0, tokens_seen=(step + 1) * 64, train_loss=train_loss,
                              val_loss=val_loss, train_ppl=float(torch.tensor(train_loss).exp()),
                              val_ppl=float(torch.tensor(val_loss).exp()), time=FIXED_TIME))
        writer.write(SampleGenerated(step=step, epoch=0, tokens_seen=(step + 1) * 64,
                                     prompt="Every effort moves you", text=f"Every effort moves you{' the' * index}",
                                     time=FIXED_TIME))
    writer.write(RunEnded(step=steps, state=state, message="", time=FIXED_TIME))
    writer.close()
    if with_checkpoint:
        torch.manual_seed(seed)
        save_checkpoint(run.checkpoints_dir, steps, GPTModel(TINY), {}, {}, val_loss=10.2 - 1.2 * (evals - 1))
    run.write_status(state, step=steps)
    for path in run.dir.rglob("*"):
        os.utime(path, (FIXED_TIME, FIXED_TIME))
    return run.dir
