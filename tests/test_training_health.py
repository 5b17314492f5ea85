"""The training loop reports update-to-weight ratios at evaluations and loss spikes as events."""

from __future__ import annotations

import math

import pytest
import torch

from engine.runs.events import LossSpike, MetricsReader, UpdateRatios
from engine.runs.store import RunStore
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run


@pytest.fixture
def config(tmp_path, verdict_text) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(verdict_text[:7000], encoding="utf-8")
    return TrainConfig(preset="gpt-nano", model_overrides={"context_length": 32}, corpus=str(corpus),
                       batch_size=2, epochs=1, max_steps=5, eval_freq=2, eval_iter=1, sample_tokens=0, seed=7,
                       device="cpu")


def test_update_ratios_are_recorded_at_each_evaluation(config, data_dir):
    train_run(config, run_name="health", data_dir=data_dir)
    events = MetricsReader(RunStore(data_dir).open("health").metrics_path).read_new()
    updates = [e for e in events if isinstance(e, UpdateRatios)]
    assert [e.step for e in updates] == [0, 2, 4]
    ratios = updates[-1].ratios
    assert "trf_blocks.0.att.W_query.weight" in ratios and "out_head.weight" in ratios
    assert all(math.isfinite(r) and 0 < r < 1 for r in ratios.values())


def test_a_non_finite_loss_is_reported_as_a_loss_spike_before_the_run_fails(config, data_dir, monkeypatch):
    import engine.training.trainer as trainer

    real, calls = trainer.chunked_loss_batch, []

    def poisoned(*args):
        loss = real(*args)
        if not torch.is_grad_enabled():  # an evaluation: leave it alone
            return loss
        calls.append(1)
        return loss * float("inf") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer, "chunked_loss_batch", poisoned)
    assert train_run(config.with_overrides(eval_freq=100), run_name="nan", data_dir=data_dir).state == "failed"
    spikes = [e for e in MetricsReader(RunStore(data_dir).open("nan").metrics_path).read_new() if isinstance(e, LossSpike)]
    assert [(e.step, e.reason, e.loss) for e in spikes] == [(2, "non-finite", None)]


def test_the_progress_lines_report_a_loss_spike():
    import io

    from tui_gpt.cli.progress import TrainingProgress

    out = io.StringIO()
    progress = TrainingProgress(out, live=False)
    progress.on_event(LossSpike(step=41, loss=9.5, recent_mean=3.2, recent_std=0.1, reason="spike"))
    progress.on_event(LossSpike(step=42, loss=float("nan"), recent_mean=3.2, recent_std=0.1, reason="non-finite"))
    assert out.getvalue().splitlines() == ["loss spike at step 42: loss 9.500, recent mean 3.200 ± 0.100",
                                           "loss spike at step 43: loss not finite, recent mean 3.200 ± 0.100"]
