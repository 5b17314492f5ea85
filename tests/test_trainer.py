"""The training run: events, checkpoints, exact resume, failures and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.runs.checkpoints import latest_checkpoint

from engine.training.checkpointing import load_checkpoint
from engine.errors import CorpusError, RunError
from engine.runs.events import (
    CheckpointSaved, EvalDone, MetricsReader, RunEnded, RunStarted, SampleGenerated, StepDone,
)
from engine.runs.store import RunStore
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run

REPO = Path(__file__).resolve().parents[1]


def tiny_train_config(corpus: Path, **overrides) -> TrainConfig:
    settings = dict(
        preset="gpt-nano", model_overrides={"context_length": 32, "drop_rate": 0.1}, corpus=str(corpus),
        batch_size=2, epochs=2, eval_freq=2, eval_iter=1, sample_tokens=3, seed=7, device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture
def corpus(tmp_path, verdict_text) -> Path:
    # A third of the verdict: 5 training batches of 2x32 tokens per epoch at stride 96.
    path = tmp_path / "corpus.txt"
    path.write_text(verdict_text[:7000], encoding="utf-8")
    return path


def step_losses(run_dir: Path) -> list[float]:
    return [e.loss for e in MetricsReader(run_dir / "metrics.jsonl").read_new() if isinstance(e, StepDone)]


def test_run_records_events_status_and_checkpoint(corpus, data_dir):
    outcome = train_run(tiny_train_config(corpus, max_steps=5), run_name="tiny", data_dir=data_dir)
    assert (outcome.state, outcome.step) == ("finished", 5)
    run = RunStore(data_dir).open("tiny")
    events = MetricsReader(run.metrics_path).read_new()
    assert isinstance(events[0], RunStarted) and events[0].total_steps == 5
    assert [e.step for e in events if isinstance(e, StepDone)] == [0, 1, 2, 3, 4]
    assert [e.step for e in events if isinstance(e, EvalDone)] == [0, 2, 4]
    assert all(s.text.startswith("Every effort moves you") for s in events if isinstance(s, SampleGenerated))
    assert any(isinstance(e, CheckpointSaved) and e.step == 5 for e in events)
    assert isinstance(events[-1], RunEnded) and events[-1].state == "finished"
    assert run.read_status()["state"] == "finished"
    config = run.read_config()
    assert config["model"]["context_length"] == 32 and config["corpus"]["fingerprint"]


def _resume_script(data_dir: Path, run: str) -> str:
    return textwrap.dedent(f"""
        from engine.training.trainer import train_run
        outcome = train_run(run_name={run!r}, data_dir={str(data_dir)!r}, resume=True)
        print(outcome.state, outcome.step)
    """)


def test_resume_in_fresh_process_is_bit_identical(corpus, tmp_path):
    # 12 steps over 5 batches per epoch: the stop at step 6 falls mid-epoch, with dropout on.
    config = tiny_train_config(corpus, max_steps=12, stride=96, eval_freq=3)
    straight_dir, split_dir = tmp_path / "straight", tmp_path / "split"
    assert train_run(config, run_name="r", data_dir=straight_dir).state == "finished"

    steps = []
    stopped = train_run(config, run_name="r", data_dir=split_dir,
                        on_event=lambda e: steps.append(e) if isinstance(e, StepDone) else None,
                        should_stop=lambda: len(steps) >= 6)
    assert (stopped.state, stopped.step) == ("stopped", 6)
    done = subprocess.run([sys.executable, "-c", _resume_script(split_dir, "r")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["finished", "12"], done.stderr

    assert step_losses(straight_dir / "runs" / "r") == step_losses(split_dir / "runs" / "r")
    a = load_checkpoint(latest_checkpoint(straight_dir / "runs" / "r" / "checkpoints").path)
    b = load_checkpoint(latest_checkpoint(split_dir / "runs" / "r" / "checkpoints").path)
    assert a.step == b.step == 12
    for name, tensor in a.model_state.items():
        assert torch.equal(tensor, b.model_state[name]), name
    assert a.training_tensors.keys() == b.training_tensors.keys()
    for name, tensor in a.training_tensors.items():
        assert torch.equal(tensor, b.training_tensors[name]), name


def test_bad_corpus_fails_before_any_run_folder(tmp_path, data_dir):
    with pytest.raises(CorpusError, match="not found"):
        train_run(tiny_train_config(tmp_path / "missing.txt"), run_name="x", data_dir=data_dir)
    assert not (data_dir / "runs" / "x").exists()


def test_an_empty_run_name_is_refused_not_made_up(corpus, data_dir):
    with pytest.raises(RunError, match="invalid run name ''"):
        train_run(tiny_train_config(corpus, max_steps=1), run_name="", data_dir=data_dir)
    assert not (data_dir / "runs").exists() or not any((data_dir / "runs").iterdir())


def test_a_run_records_its_corpus_by_absolute_path(corpus, data_dir, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    train_run(tiny_train_config(Path(corpus.name), max_steps=1), run_name="rel", data_dir=data_dir)
    assert RunStore(data_dir).open("rel").read_config()["train"]["corpus"] == str(corpus)


def test_non_finite_loss_stops_before_the_update(corpus, data_dir, monkeypatch):
    import engine.training.trainer as trainer

    real = trainer.chunked_loss_batch
    calls = []

    def poisoned(*args):
        if torch.is_grad_enabled():  # a training step's loss, not an evaluation's
            calls.append(1)
        loss = real(*args)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(trainer, "chunked_loss_batch", poisoned)
    outcome = train_run(tiny_train_config(corpus, max_steps=8, checkpoint_every=2, eval_freq=100),
                        run_name="nan", data_dir=data_dir)
    assert outcome.state == "failed" and "step 3" in outcome.message
    run = RunStore(data_dir).open("nan")
    assert run.read_status()["state"] == "failed"
    last = load_checkpoint(latest_checkpoint(run.checkpoints_dir).path)
    assert last.step == 2
    assert all(torch.isfinite(t).all() for t in last.model_state.values())


def test_out_of_memory_ends_the_run_with_a_hint(corpus, data_dir, monkeypatch):
    import engine.training.trainer as trainer

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "chunked_loss_batch", out_of_memory)
    outcome = train_run(tiny_train_config(corpus), run_name="oom", data_dir=data_dir)
    assert outcome.state == "failed"
    assert "out of memory" in outcome.message and "--batch-size" in outcome.message


def test_torchrun_two_gloo_ranks_train_and_resume(corpus, tmp_path):
    data_dir = tmp_path / "ddp"
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from engine.training.settings import TrainConfig
        from engine.runs.events import StepDone
        from engine.training.trainer import train_run
        resume = sys.argv[1] == "resume"
        config = TrainConfig(preset="gpt-nano", model_overrides={{"context_length": 32}}, corpus={str(corpus)!r},
                             batch_size=2, max_steps=6, stride=32, eval_freq=2, eval_iter=1, sample_tokens=2,
                             device="cpu")
        steps = []
        outcome = train_run(None if resume else config, run_name="ddp", data_dir={str(data_dir)!r}, resume=resume,
                            on_event=lambda e: steps.append(e) if isinstance(e, StepDone) else None,
                            should_stop=lambda: (not resume) and len(steps) >= 3)
        # One write per line: the ranks end together and share the same stdout.
        os.write(1, f"rank {{os.environ['RANK']}} {{outcome.state}} {{outcome.step}}\\n".encode())
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for phase, expected in (("start", "stopped 3"), ("resume", "finished 6")):
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
             str(script), phase],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, phase + result.stdout + result.stderr[:6000]
        assert f"rank 0 {expected}" in result.stdout and f"rank 1 {expected}" in result.stdout
    events = MetricsReader(data_dir / "runs" / "ddp" / "metrics.jsonl").read_new()
    started = [e for e in events if isinstance(e, RunStarted)]
    assert [s.world_size for s in started] == [2, 2] and [s.resumed for s in started] == [False, True]
    # Rank 0 alone writes metrics: one line per step, no duplicates.
    assert [e.step for e in events if isinstance(e, StepDone)] == [0, 1, 2, 3, 4, 5]
    # Each step took a batch from each rank.
    first = next(e for e in events if isinstance(e, StepDone))
    assert first.tokens_seen == 2 * 2 * 32
    assert json.loads((data_dir / "runs" / "ddp" / "status.json").read_text())["state"] == "finished"


def test_torchrun_a_failed_save_on_rank_0_ends_every_rank_with_its_message(corpus, tmp_path):
    """Rank 0 alone saves; when that fails (here: a full disk), the other rank must not wait for it forever."""
    script = tmp_path / "ddp_disk_full.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        import engine.training.trainer
        from engine.errors import CheckpointError
        from tui_gpt.cli.main import main

        def disk_full(*args, **kwargs):
            raise CheckpointError("cannot save the checkpoint: disk full")

        if os.environ["RANK"] == "0":
            engine.training.trainer.save_checkpoint = disk_full
        sys.exit(main(["train", "--data-dir", {str(tmp_path / "data")!r}, "--corpus", {str(corpus)!r},
                       "--run-name", "ddp", "--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2",
                       "--max-steps", "4", "--checkpoint-every", "2", "--eval-freq", "2",
                       "--eval-iter", "1", "--sample-tokens", "2", "--device", "cpu"]))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # Far below the 30-minute collective timeout that the other rank would otherwise sit out.
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(script)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode != 0
    expected = "tui-gpt: error: run ddp failed at step 2: cannot save the checkpoint: disk full"
    assert result.stderr.count(expected) == 2, result.stdout + result.stderr[-6000:]


def test_torchrun_two_gloo_ranks_train_on_a_folder_of_shards_prepared_once(tmp_path, verdict_text):
    """A folder of JSON Lines and Parquet shards: rank 0 prepares it, both ranks train on their parts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paragraphs = [p for p in verdict_text.split("\n\n") if p.strip()]
    shards = tmp_path / "shards"
    shards.mkdir()
    for index in range(2):
        records = paragraphs[index::3]
        (shards / f"part-{index}.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in records) + "\n")
    pq.write_table(pa.table({"text": paragraphs[2::3]}), shards / "part-2.parquet")
    data_dir = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def torchrun_train(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "tui_gpt",
             "train", "--data-dir", str(data_dir), "--run-name", "shards", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr[-6000:]
        return result

    torchrun_train("--corpus", str(shards), "--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2",
                   "--max-steps", "3", "--eval-freq", "3", "--eval-iter", "1", "--sample-tokens", "2",
                   "--device", "cpu", "--precision", "fp32")
    torchrun_train("--resume", "--max-steps", "5")

    # Prepared once, by rank 0, into one cache entry that both runs read.
    prepared = [p for p in (data_dir / "cache").rglob("meta.json")]
    assert len(prepared) == 1, prepared
    meta = json.loads(prepared[0].read_text())
    assert meta["train_documents"] + meta["val_documents"] == len(paragraphs)
    events = MetricsReader(data_dir / "runs" / "shards" / "metrics.jsonl").read_new()
    assert [e.world_size for e in events if isinstance(e, RunStarted)] == [2, 2]
    assert [e.step for e in events if isinstance(e, StepDone)] == [0, 1, 2, 3, 4]
    # Every step took a batch of 2 windows of 32 tokens from each rank's part.
    assert [e.tokens_seen for e in events if isinstance(e, StepDone)] == [128 * (step + 1) for step in range(5)]
    assert [e.step for e in events if isinstance(e, EvalDone)] == [0, 3]  # every third step, across the resume
    assert json.loads((data_dir / "runs" / "shards" / "status.json").read_text())["state"] == "finished"
