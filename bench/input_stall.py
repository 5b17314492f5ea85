"""How long a training step waits for its batch, on a token-file corpus, through `train_run`.

The run is the product's own: `engine.training.trainer.train_run`, as `tui-gpt
train --corpus train.bin` calls it, on a nanoGPT-style train.bin/val.bin
(uint16 ids, generated once into the temp folder; the ids are random, which a
step's speed does not depend on). Nothing in the product changes: the bench
gives the run a TrainingLoop whose `epoch_batches` is wrapped, and the wrapper
times each `next()` on the loop's batch iterator (the first one includes making
the iterator, as the loop's `for` does). Each step's time is its StepDone event's
`step_time`, which spans the wait for its batch too.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from engine.runs.events import StepDone
from engine.training import trainer
from engine.training.loop import TrainingLoop
from engine.training.settings import TrainConfig

from .report import CaseResult, Check, Row, Target

VOCAB = 50257
TOKENS_VERSION = 1


def token_files(train_tokens: int) -> Path:
    """train.bin (and a val.bin a tenth its size) of random GPT-2 ids; returns train.bin's path."""
    folder = Path(tempfile.gettempdir()) / "tui-gpt-bench" / f"tokens-v{TOKENS_VERSION}-{train_tokens}"
    train = folder / "train.bin"
    if not train.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(99)
        for path, n in ((folder / "val.bin", max(train_tokens // 10, 4096)), (train, train_tokens)):
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("wb") as file:
                for start in range(0, n, 2**24):
                    rng.integers(0, VOCAB, min(2**24, n - start), dtype=np.uint16).tofile(file)
            os.replace(partial, path)
    return train


class _TimedBatches:
    """An epoch's batches, recording how long each `next()` took."""

    def __init__(self, batches, waits: list[float]):
        self.batches, self.waits = batches, waits

    def __iter__(self):
        start = time.perf_counter()
        iterator = iter(self.batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            yield batch
            start = time.perf_counter()


def measure_waits(config: TrainConfig, data_dir: Path) -> tuple[list[float], list[float]]:
    """Train with `config`; (each batch's wait, each step's time) in seconds, in step order."""
    waits: list[float] = []
    steps: list[float] = []

    class WaitTimingLoop(TrainingLoop):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            batches = self.epoch_batches
            self.epoch_batches = lambda epoch, skip: _TimedBatches(batches(epoch, skip), waits)

    def on_event(event) -> None:
        if isinstance(event, StepDone):
            steps.append(event.step_time)

    with mock.patch.object(trainer, "TrainingLoop", WaitTimingLoop):
        outcome = trainer.train_run(config, run_name="input-stall", data_dir=data_dir, on_event=on_event)
    if outcome.state != "finished":
        raise RuntimeError(f"the input-stall run ended {outcome.state}: {outcome.message}")
    return waits, steps


def input_stall_case(device: torch.device, preset: str, batch_size: int, steps: int, train_tokens: int,
                     title: str) -> CaseResult:
    result = CaseResult(title)
    corpus = token_files(train_tokens)
    # One evaluation (step 0) and the final sample and checkpoint, as any run has; the steps are what counts.
    config = TrainConfig(preset=preset, corpus=str(corpus), max_steps=steps, batch_size=batch_size, eval_freq=steps,
                         device=str(device))
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-stall-") as data_dir:
        waits, step_times = measure_waits(config, Path(data_dir))
    wait, step = statistics.median(waits), statistics.median(step_times)
    fraction = wait / step
    share = sum(waits) / sum(step_times)
    result.checks.append(Check(f"one batch wait per step ({len(waits)} waits, {len(step_times)} steps); "
                               f"the waits are {share:.2%} of all step time, the first included",
                               len(waits) == len(step_times) and 0 <= fraction <= 1))
    for name, values, note in (("batch wait", waits, "next() on the loop's batch iterator"),
                               ("whole step", step_times, "StepDone.step_time, the wait included")):
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median if median > 0 else 0.0
        limit = f"{median / step:.2%} of the median step" if name == "batch wait" else ""
        result.rows.append(Row(name, median, "step", limit=limit, spread=spread, note=note))
    result.targets.append(Target("median batch wait ÷ median step (%)", 100 * fraction, 1.0, higher_is_better=False))
    return result
