"""--fsdp: FSDP2 under torchrun (2 gloo processes on the CPU), with the checkpoints of DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from engine.runs.checkpoints import latest_checkpoint
from engine.runs.events import MetricsReader, RunStarted, StepDone, UpdateRatios
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run
from engine.weights.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2", "--eval-freq", "2",
        "--eval-iter", "1", "--sample-tokens", "2", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture
def corpus(tmp_path, verdict_text) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(verdict_text[:7000], encoding="utf-8")
    return path


def torchrun_train(data_dir: Path, *args: str) -> str:
    """`tui-gpt train` on 2 gloo processes.

    Each compared run has a data folder of its own: the first run in a folder measures
    the CPU's peak FLOP/s, drawing random numbers that shift its dropout masks.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "tui_gpt",
         "train", "--data-dir", str(data_dir), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    return result.stdout


def events(data_dir: Path, run: str):
    return MetricsReader(data_dir / "runs" / run / "metrics.jsonl").read_new()


def layout(checkpoint: Path) -> dict[str, dict[str, tuple]]:
    """Each safetensors file's tensor names and shapes."""
    files = {}
    for name in ("model.safetensors", "state.safetensors"):
        with safe_open(checkpoint / name, "pt") as f:
            files[name] = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (a safe_open, not a dict)
    return files


def test_an_fsdp_run_trains_as_ddp_saves_its_checkpoints_and_resumes_under_either(corpus, tmp_path):
    ddp_data, data = tmp_path / "ddp", tmp_path / "fsdp"
    torchrun_train(ddp_data, "--corpus", str(corpus), "--run-name", "ddp", "--max-steps", "3", *TINY)
    torchrun_train(data, "--corpus", str(corpus), "--run-name", "fsdp", "--max-steps", "3", "--fsdp", *TINY)

    # The same initial weights and batches: the same losses, up to the order of float sums.
    ddp_events, fsdp_events = events(ddp_data, "ddp"), events(data, "fsdp")

    def first(kind, recorded):
        return next(e for e in recorded if isinstance(e, kind))

    ddp_steps = [e for e in ddp_events if isinstance(e, StepDone)]
    fsdp_steps = [e for e in fsdp_events if isinstance(e, StepDone)]
    assert [e.loss for e in fsdp_steps] == pytest.approx([e.loss for e in ddp_steps], rel=1e-4)
    # Sizes and norms over sharded parameters are those of the whole tensors.
    assert first(RunStarted, fsdp_events).n_params == first(RunStarted, ddp_events).n_params
    assert [e.grad_norm for e in fsdp_steps] == pytest.approx([e.grad_norm for e in ddp_steps], rel=1e-3)
    assert first(UpdateRatios, fsdp_events).ratios == pytest.approx(first(UpdateRatios, ddp_events).ratios, rel=1e-3)
    ddp_checkpoint = Path(latest_checkpoint(ddp_data / "runs" / "ddp" / "checkpoints").path)
    fsdp_checkpoint = Path(latest_checkpoint(data / "runs" / "fsdp" / "checkpoints").path)
    assert sorted(p.name for p in fsdp_checkpoint.iterdir()) == sorted(p.name for p in ddp_checkpoint.iterdir())
    assert layout(fsdp_checkpoint) == layout(ddp_checkpoint)
    # The gathered weights are the whole model: those DDP trained, up to the order of float sums.
    fsdp_model, _ = load_model(fsdp_checkpoint)
    ddp_model, _ = load_model(ddp_checkpoint)
    ddp_state = ddp_model.state_dict()
    for name, tensor in fsdp_model.state_dict().items():
        torch.testing.assert_close(tensor, ddp_state[name], rtol=1e-4, atol=1e-5)

    torchrun_train(data, "--run-name", "fsdp", "--resume", "--max-steps", "5", "--no-fsdp")
    torchrun_train(data, "--run-name", "fsdp", "--resume", "--max-steps", "7", "--fsdp")
    torchrun_train(ddp_data, "--run-name", "ddp", "--resume", "--max-steps", "7")
    recorded = events(data, "fsdp")
    assert [e.step for e in recorded if isinstance(e, StepDone)] == list(range(7))
    assert [e.resumed for e in recorded if isinstance(e, RunStarted)] == [False, True, True]
    assert latest_checkpoint(data / "runs" / "fsdp" / "checkpoints").step == 7
    # Moved between FSDP and DDP twice, the run went on as the one that stayed under DDP.
    assert ([e.loss for e in recorded if isinstance(e, StepDone)]
            == pytest.approx([e.loss for e in events(ddp_data, "ddp") if isinstance(e, StepDone)], rel=1e-4))


def test_a_run_started_under_ddp_resumes_under_fsdp_where_it_stopped(corpus, tmp_path):
    data, straight_data = tmp_path / "resumed", tmp_path / "straight"
    torchrun_train(data, "--corpus", str(corpus), "--run-name", "run", "--max-steps", "3", *TINY)
    torchrun_train(data, "--run-name", "run", "--resume", "--max-steps", "5", "--fsdp")
    torchrun_train(straight_data, "--corpus", str(corpus), "--run-name", "straight", "--max-steps", "5", *TINY)

    resumed = [e.loss for e in events(data, "run") if isinstance(e, StepDone)]
    straight = [e.loss for e in events(straight_data, "straight") if isinstance(e, StepDone)]
    # The optimizer's moments came through: the resumed steps are those of an uninterrupted run.
    assert resumed == pytest.approx(straight, rel=1e-4)


def test_fsdp_on_one_process_trains_as_without_it(corpus, tmp_path):
    """Without torchrun there is nothing to shard across: --fsdp trains the plain model."""
    plain = tiny_config(corpus)
    for name, config in (("plain", plain), ("fsdp", plain.with_overrides(fsdp=True))):
        outcome = train_run(config, run_name=name, data_dir=tmp_path / name)
        assert (outcome.state, outcome.step) == ("finished", 3)
    losses = {name: [e.loss for e in events(tmp_path / name, name) if isinstance(e, StepDone)]
              for name in ("plain", "fsdp")}
    assert losses["fsdp"] == losses["plain"]


def tiny_config(corpus: Path) -> TrainConfig:
    return TrainConfig(preset="gpt-nano", model_overrides={"context_length": 32}, corpus=str(corpus), batch_size=2,
                       max_steps=3, eval_freq=2, eval_iter=1, sample_tokens=2, device="cpu", precision="fp32")
