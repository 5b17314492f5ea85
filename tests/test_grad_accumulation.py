"""Gradient accumulation: the logged loss is the step's, and under DDP only a step's last micro-batch all-reduces."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.runs.events import StepDone
from engine.training.loop import LoopSettings, TrainingLoop

REPO = Path(__file__).resolve().parents[1]


def micro_batches(config, count: int, batch_size: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, config.vocab_size, (count, batch_size, config.context_length + 1), generator=generator)
    return [(t[:, :-1], t[:, 1:]) for t in tokens]


def train_steps(model, batches, grad_accum_steps: int) -> list[StepDone]:
    events = []
    settings = LoopSettings(epochs=1, total_steps=len(batches) // grad_accum_steps, eval_freq=1000, eval_iter=1,
                            lr=1e-3, grad_accum_steps=grad_accum_steps, sample_tokens=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    TrainingLoop(model, optimizer, torch.device("cpu"), settings, get_tokenizer(), lambda epoch, skip: batches[skip:],
                 batches[:1], batches[:1], emit=events.append).run()
    return [e for e in events if isinstance(e, StepDone)]


def test_logged_step_loss_is_the_mean_of_its_micro_batch_losses(tiny_config):
    torch.manual_seed(0)
    model = GPTModel(tiny_config)
    batches = micro_batches(tiny_config, 8)
    # The losses of the first step's four micro-batches, computed apart from the loop with the same weights.
    reference = copy.deepcopy(model)
    with torch.no_grad():
        expected = [torch.nn.functional.cross_entropy(reference(x).flatten(0, 1), y.flatten()).item()
                    for x, y in batches[:4]]
    steps = train_steps(model, batches, grad_accum_steps=4)
    assert [s.step for s in steps] == [0, 1]
    assert steps[0].loss == pytest.approx(sum(expected) / 4, rel=1e-6)
    assert steps[0].loss != pytest.approx(expected[-1], rel=1e-3)  # not just the last micro-batch's
    assert steps[0].tokens_seen == 4 * batches[0][0].numel()


@pytest.fixture
def ddp_worker(tmp_path) -> Path:
    # Batches are numbered as the loop draws them, so the hook knows which micro-batch's backward it serves.
    script = tmp_path / "ddp_accumulation.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys
        import torch
        from engine.model.config import GPTConfig
        from engine.model.gpt import GPTModel
        from engine.model.tokenizer import get_tokenizer
        from engine.runs.events import StepDone
        from engine.training import distributed
        from engine.training.loop import LoopSettings, TrainingLoop
        from tests.test_grad_accumulation import micro_batches

        ctx, device = distributed.setup("cpu")
        config = GPTConfig(context_length=16, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
        torch.manual_seed(0)
        model = GPTModel(config)
        batches = micro_batches(config, 8, seed=1 + ctx.rank)  # each rank its own data
        drawing = {"micro_batch": None}

        def epoch_batches(epoch, skip):
            for index in range(skip, len(batches)):
                drawing["micro_batch"] = index
                yield batches[index]

        all_reduced_in = []

        def counting_all_reduce(state, bucket):
            all_reduced_in.append(drawing["micro_batch"])
            work = torch.distributed.all_reduce(bucket.buffer().div_(ctx.world_size), async_op=True)
            return work.get_future().then(lambda future: future.value()[0])

        ddp = torch.nn.parallel.DistributedDataParallel(model)
        ddp.register_comm_hook(None, counting_all_reduce)
        settings = LoopSettings(epochs=1, total_steps=2, eval_freq=1000, eval_iter=1, lr=1e-3, grad_accum_steps=4,
                                sample_tokens=0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        TrainingLoop(ddp, optimizer, device, settings, get_tokenizer(), epoch_batches, batches[:1], batches[:1],
                     emit=lambda event: None, raw_model=model, world_size=ctx.world_size).run()
        torch.save(model.state_dict(), os.environ["WEIGHTS_OUT"] + f".rank{ctx.rank}")
        # One write of the whole line: the two ranks share the pipe, and print's separate writes of
        # its pieces can interleave with the other rank's.
        sys.stdout.write(f"all-reduced in micro-batches {json.dumps(sorted(set(all_reduced_in)))}\\n")
        sys.stdout.flush()
        distributed.teardown(ctx)
    """))
    return script


def test_ddp_all_reduces_only_on_the_last_micro_batch_of_each_step(ddp_worker, tmp_path):
    weights = tmp_path / "weights"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "WEIGHTS_OUT": str(weights)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(ddp_worker)],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    # Micro-batches 0-2 and 4-6 run under no_sync; 3 and 7 end the two optimizer steps.
    reports = [line for line in result.stdout.splitlines() if line.startswith("all-reduced in micro-batches")]
    assert reports == ["all-reduced in micro-batches [3, 7]"] * 2

    # The accumulated-then-averaged gradients give the weights of one process that takes each step on all
    # eight micro-batches (four from each rank).
    config = GPTConfig(context_length=16, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
    torch.manual_seed(0)
    model = GPTModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    per_rank = [micro_batches(config, 8, seed=1 + rank) for rank in range(2)]
    for step in range(2):
        optimizer.zero_grad()
        for rank_batches in per_rank:
            for x, y in rank_batches[4 * step : 4 * step + 4]:
                loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                (loss / 8).backward()
        optimizer.step()
    for rank in range(2):
        trained = torch.load(f"{weights}.rank{rank}", weights_only=True)
        for name, value in model.state_dict().items():
            torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5, msg=f"rank {rank}: {name}")
