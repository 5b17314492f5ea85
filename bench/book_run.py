"""The book's chapter 5 run as whole processes: `tui-gpt train --recipe book` against the book's pipeline.

Each contender is one process from launch to exit, on tests/data/the-verdict.txt:

- tui-gpt: `python -m tui_gpt train --recipe book --epochs N` in a fresh data
  folder (so the corpus is tokenized and the CPU's matmul rate measured anew,
  as on a first run): start-up, evaluations, samples, the final checkpoint.
- book: `python -m bench.book_pipeline` (the book's own code: its model, data
  loader, train_model_simple, AdamW and torch.save; see that module).

They alternate round by round. Both must print the same evaluations (step,
train loss, val loss to the book's three decimals). Where each one's time goes:
tui-gpt's from the times of the events in its run's metrics.jsonl (start-up is
launch to RunStarted; an evaluation, a sample or a checkpoint is the time from
the event before it to its own; steps are the StepDone step times), the book's
from its own clock (bench.book_pipeline).
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from engine.model.config import get_preset
from engine.training.settings import get_recipe

from .report import CaseResult, Check, Row, Target
from .timing import time_alternating
from .train_memory import VERDICT, _env

PHASES = ("start-up", "steps", "evaluations", "samples", "checkpoint", "exit", "other")
_TIMED_EVENTS = {"eval": "evaluations", "sample": "samples", "checkpoint": "checkpoint"}


def book_run_case(device: torch.device, epochs: int, preset: str | None, context: int | None, chars: int | None,
                  repeats: int, warmup: int, title: str) -> CaseResult:
    """`preset`, `context` and `chars` replace the recipe's gpt2-small, its 256 and the whole text (for a smoke run)."""
    result = CaseResult(title)
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-book-") as folder:
        corpus = VERDICT
        if chars:
            corpus = Path(folder) / "the-verdict-start.txt"
            corpus.write_text(VERDICT.read_text(encoding="utf-8")[:chars], encoding="utf-8")
        _compare(result, corpus, device, epochs, preset, context, repeats, warmup)
    return result


def _compare(result: CaseResult, corpus: Path, device: torch.device, epochs: int, preset: str | None,
             context: int | None, repeats: int, warmup: int) -> None:
    recipe = get_recipe("book")
    cfg = get_preset(preset or recipe.preset).with_overrides(**recipe.model_overrides)
    model_options = ["--preset", preset] if preset else []
    if context:
        cfg = cfg.with_overrides(context_length=context)
        model_options += ["--context-length", str(context), "--stride", str(context)]  # the book's stride: its context
    runs: dict[str, list[dict]] = {"tui-gpt": [], "book": []}
    where = "cuda" if device.type == "cuda" else "cpu"
    contenders = {"tui-gpt": lambda: runs["tui-gpt"].append(_tui_gpt_run(corpus, epochs, model_options, where)),
                  "book": lambda: runs["book"].append(_book_run(corpus, epochs, cfg.to_dict(), where))}
    samples = time_alternating(contenders, repeats, warmup)
    first = {name: measured[0] for name, measured in runs.items()}
    result.checks.append(Check("tui-gpt trained the model given to the book's pipeline",
                               first["tui-gpt"]["model"] == cfg.to_dict()))
    evaluations = {name: [(step, f"{train:.3f}", f"{val:.3f}") for step, train, val in run["evaluations"]]
                   for name, run in first.items()}
    ours, book = evaluations["tui-gpt"], evaluations["book"]
    differing = [(mine, theirs) for mine, theirs in zip(ours, book) if mine != theirs]
    found = (f"first differs: tui-gpt {differing[0][0]}, book {differing[0][1]}" if differing
             else f"the last {book[-1]}" if book else "none")
    result.checks.append(Check(f"the same {len(book)} evaluations (step, train, val loss to 3 decimals; {found})",
                               ours == book and bool(book)))
    for name in runs:
        timed = runs[name][-repeats:]
        sample = samples[name]
        note = ("python -m tui_gpt train --recipe book, fresh data folder" if name == "tui-gpt"
                else "python -m bench.book_pipeline: the book's code")
        result.rows.append(Row(name, sample.median, f"process, {epochs} epochs", spread=sample.spread, note=note))
        for phase in PHASES:
            seconds = statistics.median(run["phases"].get(phase, 0.0) for run in timed)
            result.rows.append(Row(f"{name}: {phase}", seconds, "run", limit=f"{seconds / sample.median:.0%} of the run"))
    if not (preset or context):  # the target is set for the book's own model
        result.targets.append(Target("book's wall time ÷ tui-gpt's (whole process)", result.ratio("tui-gpt", "book"), 1.3))


def _tui_gpt_run(corpus: Path, epochs: int, model_options: list[str], device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-book-") as data_dir:
        command = [sys.executable, "-m", "tui_gpt", "train", "--recipe", "book", "--epochs", str(epochs),
                   "--corpus", str(corpus), "--data-dir", data_dir, "--run-name", "book", "--device", device, *model_options]
        launched, ended = _run(command)
        run = Path(data_dir) / "runs" / "book"
        events = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
        recorded = json.loads((run / "config.json").read_text(encoding="utf-8"))["model"]
    phases = dict.fromkeys(PHASES, 0.0)
    started = next(e["time"] for e in events if e["event"] == "run_started")
    phases["start-up"] = started - launched
    for before, event in itertools.pairwise(events):
        if event["event"] == "step":
            phases["steps"] += event["step_time"]
        elif event["event"] in _TIMED_EVENTS:
            phases[_TIMED_EVENTS[event["event"]]] += event["time"] - before["time"]
    phases["exit"] = ended - events[-1]["time"]
    phases["other"] = (ended - launched) - sum(phases.values())
    evaluations = [(e["step"], e["train_loss"], e["val_loss"]) for e in events if e["event"] == "eval"]
    return {"phases": phases, "evaluations": evaluations, "model": recorded}


def _book_run(corpus: Path, epochs: int, model: dict, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-book-") as out:
        command = [sys.executable, "-m", "bench.book_pipeline", json.dumps(model), str(corpus), str(epochs), out,
                   device]
        launched, ended, stdout = _run(command, keep_output=True)
    report = json.loads(stdout.strip().splitlines()[-1])
    phases = dict.fromkeys(PHASES, 0.0)
    phases.update(report["phases"])
    phases["start-up"] = report["training_started"] - launched
    phases["exit"] = ended - report["ended"]
    phases["other"] = (ended - launched) - sum(phases.values())
    return {"phases": phases, "evaluations": report["evaluations"]}


def _run(command: list[str], keep_output: bool = False):
    """Run to the end; (launch time, end time[, stdout]) as time.time()."""
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {done.stderr[-800:]}")
    return (launched, ended, done.stdout) if keep_output else (launched, ended)
