"""A run shorter than an epoch draws its windows (seeded), and resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from engine.runs.checkpoints import latest_checkpoint
from engine.runs.events import MetricsReader, StepDone
from engine.training import distributed
from engine.training.checkpointing import load_checkpoint
from engine.training.settings import TrainConfig
from engine.training.trainer import SampledWindows, train_run

REPO = Path(__file__).resolve().parents[1]


def test_longer_draw_begins_with_the_shorter_and_ranks_differ():
    one = distributed.Distributed()
    short, long = SampledWindows(10_000, 5000, one, seed=3), SampledWindows(10_000, 9000, one, seed=3)
    assert long.draw()[:5000] == short.draw()
    assert max(long.order) < 10_000
    other_rank = SampledWindows(10_000, 5000, distributed.Distributed(rank=1, world_size=2), seed=3)
    assert other_rank.draw() != short.order


def _config(corpus: Path, **overrides) -> TrainConfig:
    return TrainConfig(preset="gpt-nano", model_overrides={"context_length": 16}, corpus=str(corpus), batch_size=2,
                       max_steps=8, eval_freq=4, eval_iter=1, sample_tokens=0, seed=5, device="cpu", **overrides)


def test_run_shorter_than_an_epoch_resumes_bit_identically(tmp_path):
    corpus = tmp_path / "d.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"record {i} " + "words and more words " * 20}) for i in range(400)))
    straight = train_run(_config(corpus), run_name="r", data_dir=tmp_path / "straight")
    assert straight.state == "finished"
    steps: list = []
    stopped = train_run(_config(corpus), run_name="r", data_dir=tmp_path / "split",
                        on_event=lambda e: steps.append(e) if isinstance(e, StepDone) else None,
                        should_stop=lambda: len(steps) >= 3)
    assert (stopped.state, stopped.step) == ("stopped", 3)
    script = textwrap.dedent(f"""
        from engine.training.trainer import train_run
        outcome = train_run(run_name="r", data_dir={str(tmp_path / "split")!r}, resume=True)
        print(outcome.state, outcome.step)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["finished", "8"], done.stderr

    def losses(root):
        return [e.loss for e in MetricsReader(root / "runs" / "r" / "metrics.jsonl").read_new() if isinstance(e, StepDone)]

    assert losses(tmp_path / "straight") == losses(tmp_path / "split")
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight" / "runs" / "r" / "checkpoints").path)
    b = load_checkpoint(latest_checkpoint(tmp_path / "split" / "runs" / "r" / "checkpoints").path)
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name
