"""`python -m bench.bf16_curve`: does bf16 autocast train as fp32 does, over a whole run?

Trains the same model twice through the trainer (`train_run`), from the same
seed on tests/data/the-verdict.txt, once with `--precision fp32` and once with
`bf16`, and compares the losses of every evaluation. Exit status 1 when they
differ by more than the tolerance at any evaluation (default: 200 steps of
gpt-micro, tolerance 0.05). Accuracy, not speed: the `train-bf16` case of
`python -m bench` times the step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from engine.fast.allocator import keep_freed_memory
from engine.runs.events import EvalDone
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run

from .train_memory import VERDICT


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bf16_curve", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt-micro")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-freq", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args(argv)
    keep_freed_memory()
    curves = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(preset=args.preset, corpus=str(VERDICT), batch_size=args.batch_size,
                             max_steps=args.steps, eval_freq=args.eval_freq, eval_iter=2, sample_tokens=0,
                             device="cpu", precision=precision, checkpoint_minutes=None, keep_last=1)
        evals = []
        with tempfile.TemporaryDirectory() as data_dir:
            train_run(config, run_name=precision, data_dir=data_dir,
                      on_event=lambda e: evals.append(e) if isinstance(e, EvalDone) else None)
        curves[precision] = evals
    worst = 0.0
    print("| step | fp32 train | bf16 train | fp32 val | bf16 val | largest difference |")
    print("|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(curves["fp32"], curves["bf16"]):
        diff = max(abs(a.train_loss - b.train_loss), abs(a.val_loss - b.val_loss))
        worst = max(worst, diff)
        print(f"| {a.step} | {a.train_loss:.4f} | {b.train_loss:.4f} | {a.val_loss:.4f} | {b.val_loss:.4f} | {diff:.4f} |")
    ok = worst <= args.tolerance and len(curves["fp32"]) == len(curves["bf16"]) > 0
    print(f"{'ok' if ok else 'NOT met'}: largest difference {worst:.4f} over {len(curves['fp32'])} evaluations "
          f"(goal ≤ {args.tolerance})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
