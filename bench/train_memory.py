"""Peak memory of training, beside its speed: each measurement in a fresh process.

A process's peak resident set only grows, so contenders cannot share one: each
run here is `python -m bench.train_memory LOSS PRECISION STEPS` in a process
of its own, which trains gpt-nano at context 128, batch 8 (the issue's
setting) for a few steps with freed memory kept (as `tui-gpt train` runs) and
prints its median step time and its peak RSS as JSON. The cases alternate the
contenders' processes round by round, like every other case.

- book: the book's `calc_loss_batch` (every logit at once), fp32.
- chunked: `engine.fast.chunked_loss` as the trainer runs it, fp32.
- chunked-bf16: the same under bf16 autocast.
- tui-gpt train: the whole command on tests/data/the-verdict.txt (start-up,
  tokenizer, evaluations, samples, a checkpoint): what a user sees.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .load_memory import rss_bytes
from .report import CaseResult, Row, Target

STEP_CONTENDERS = ("book", "chunked", "chunked-bf16")
PEAK_RSS_GOAL = 1.2e9  # bytes, for `tui-gpt train` with gpt-nano at batch 8, context 128
VERDICT = Path(__file__).resolve().parent.parent / "tests" / "data" / "the-verdict.txt"


def memory_case(repeats: int, steps: int, title: str) -> CaseResult:
    result = CaseResult(title)
    runs: dict[str, list[dict]] = {name: [] for name in STEP_CONTENDERS}
    for round_index in range(repeats):
        shift = round_index % len(STEP_CONTENDERS)
        for name in STEP_CONTENDERS[shift:] + STEP_CONTENDERS[:shift]:
            runs[name].append(_probe(name, steps))
    for name, measured in runs.items():
        _add_row(result, name, [m["step_seconds"] for m in measured], "step",
                 [m["peak_rss"] for m in measured], 8 * 128)
    return result


def cli_memory_case(repeats: int, steps: int, title: str) -> CaseResult:
    result = CaseResult(title)
    seconds, peaks = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as data_dir:
            command = [sys.executable, "-m", "tui_gpt", "train", "--data-dir", data_dir, "--preset", "gpt-nano",
                       "--batch-size", "8", "--context-length", "128", "--max-steps", str(steps),
                       "--corpus", str(VERDICT)]
            start = time.perf_counter()
            peak = _run_child(command)
            seconds.append(time.perf_counter() - start)
            peaks.append(peak)
    _add_row(result, "tui-gpt train", seconds, f"run of {steps} steps", peaks, None)
    result.targets.append(Target("peak RSS of tui-gpt train (GB)", statistics.median(peaks) / 1e9,
                                 PEAK_RSS_GOAL / 1e9, higher_is_better=False))
    return result


def _add_row(result: CaseResult, name: str, seconds: list[float], per: str, peaks: list[int],
             tokens: int | None) -> None:
    median = statistics.median(seconds)
    spread = (max(seconds) - min(seconds)) / median if median > 0 else 0.0
    result.rows.append(Row(name, median, per, tokens / median if tokens else None, "tok/s" if tokens else "",
                           f"peak RSS {statistics.median(peaks) / 1e6:,.0f} MB (fresh process)", spread))


def _probe(name: str, steps: int) -> dict:
    command = [sys.executable, "-m", "bench.train_memory", name, str(steps)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=_env()).stdout
    return json.loads(out.strip().splitlines()[-1])


def _run_child(command: list[str]) -> int:
    """Run `python -m MODULE ...` to its end; its own peak RSS in bytes (bench.peak_rss: not wait4's ru_maxrss,
    which starts at this process's)."""
    python, flag, module, *args = command
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-rss-") as folder:
        out = Path(folder) / "peak"
        done = subprocess.run([python, flag, "bench.peak_rss", str(out), module, *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=_env(), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed: {done.stderr.decode()[-500:]}")
        return int(out.read_text(encoding="ascii"))


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def _train_steps(name: str, steps: int) -> dict:
    import torch

    from engine.fast.allocator import keep_freed_memory
    from engine.fast.chunked_loss import chunked_loss_batch
    from engine.model.config import PRESETS
    from engine.model.gpt import GPTModel
    from engine.training.device import autocast
    from engine.training.loss import calc_loss_batch

    keep_freed_memory()
    torch.manual_seed(123)
    model = GPTModel(PRESETS["gpt-nano"].with_overrides(context_length=128))
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1, fused=True)
    loss_batch = calc_loss_batch if name == "book" else chunked_loss_batch
    dtype = torch.bfloat16 if name.endswith("bf16") else None
    tokens = torch.randint(0, 50257, (8, 129))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with autocast(torch.device("cpu"), dtype):
            loss = loss_batch(tokens[:, :-1], tokens[:, 1:], model, "cpu")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"step_seconds": statistics.median(times[1:] or times),
            "peak_rss": rss_bytes("VmHWM")}


if __name__ == "__main__":
    print(json.dumps(_train_steps(sys.argv[1], int(sys.argv[2]))))
