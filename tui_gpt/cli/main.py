"""The `tui-gpt` command: the Textual app, or `train`, `runs` and `generate` without it.

Nothing heavy is imported at module level (no torch, no engine): `tui-gpt --help`
answers at once and the app's first frame is not held up. Each command imports
what it needs when it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Sequence

import tui_gpt

# Exit statuses, the same as engine.training.signals': this module cannot import that before
# torch (engine's package imports it), and must report errors even when torch is broken.
EXIT_FINISHED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_ABORTED = 0, 1, 2, 3, 130

EPILOG = f"""\
exit codes:
  {EXIT_FINISHED:<4} finished
  {EXIT_FAILED:<4} failed (an error during training or generation)
  {EXIT_BAD_INPUT:<4} bad input (usage, config, corpus, checkpoint or run errors); nothing was trained
  {EXIT_STOPPED:<4} stopped on request (Ctrl-C, SIGTERM, SIGHUP) after saving a checkpoint; continue with --resume
  {EXIT_ABORTED:<4} second Ctrl-C: left at once, keeping the last saved checkpoint

data dir: --data-dir, else $TUI_GPT_DATA_DIR, else the user data dir for tui-gpt.
"""

# Training options, by help section: (flag, TrainConfig field, type, metavar, help).
# Their defaults come from the recipe or TrainConfig, so argparse records only
# the options actually given (default=SUPPRESS): on --resume, exactly those
# replace the run's stored settings.
_TRAIN_OPTIONS: dict[str, tuple[tuple[str, str, type, str, str], ...]] = {
    "what to train": (
        ("--corpus", "corpus", str, "PATH", "a text file or a folder of .txt files (default: the built-in demo corpus)"),
        ("--preset", "preset", str, "NAME", "model size: gpt-nano, gpt-micro, gpt2-small, gpt2-medium, ..."),
        ("--init-from", "init_from", str, "NAME|PATH",
         "start from these weights: gpt2, gpt2-medium, ..., a Hugging Face folder, a .safetensors/.pth file or a checkpoint"),
    ),
    "schedule": (
        ("--epochs", "epochs", int, "N", "passes over the training data"),
        ("--max-steps", "max_steps", int, "N", "stop after N optimizer steps in all"),
        ("--batch-size", "batch_size", int, "N", "sequences per micro-batch"),
        ("--grad-accum", "grad_accum_steps", int, "N", "micro-batches per optimizer step"),
        ("--lr", "lr", float, "LR", "peak learning rate"),
        ("--min-lr", "min_lr", float, "LR", "decay the learning rate along a cosine down to this"),
        ("--warmup-steps", "warmup_steps", int, "N", "linear learning-rate warmup steps"),
        ("--weight-decay", "weight_decay", float, "W", "AdamW weight decay"),
        ("--grad-clip", "grad_clip", float, "NORM", "clip the gradient norm to this"),
        ("--seed", "seed", int, "N", "random seed (initial weights, data order, dropout)"),
    ),
    "evaluation and samples": (
        ("--eval-freq", "eval_freq", int, "N", "evaluate every N steps"),
        ("--eval-iter", "eval_iter", int, "N", "batches per evaluation"),
        ("--start-context", "start_context", str, "TEXT", "prompt of the samples printed while training"),
        ("--sample-tokens", "sample_tokens", int, "N", "tokens per sample (0: no samples)"),
    ),
    "checkpoints and hardware": (
        ("--checkpoint-every", "checkpoint_every", int, "N",
         "also save every N steps (a checkpoint is always saved when stopping and at the end)"),
        ("--checkpoint-minutes", "checkpoint_minutes", float, "M", "also save every M minutes of training (default 10)"),
        ("--keep-last", "keep_last", int, "N", "keep the N most recent checkpoints (and always the best one)"),
        ("--device", "device", str, "{auto,cpu,cuda,mps}", "where to train (also cuda:N)"),
        ("--precision", "precision", str, "{auto,fp32,bf16}", "auto: bf16 autocast on GPUs and CPUs that run bf16 natively, else fp32"),
    ),
}
# Switches (no value) for TrainConfig's boolean fields: (flag, field, help), in the last group above.
_TRAIN_SWITCHES = (
    ("--compile", "compile", "torch.compile the model for training (needs a C++ compiler on a CPU); "
                             "the first step includes the compile time"),
)
TRAIN_FIELDS = tuple(field for options in _TRAIN_OPTIONS.values() for _, field, *_ in options) + tuple(
    field for _, field, _ in _TRAIN_SWITCHES)


def build_parser() -> argparse.ArgumentParser:
    from tui_gpt.cli import commands  # here, not at the top: commands imports this module

    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a --data-dir given before the subcommand is not reset by the subcommand's default.
    common.add_argument("--data-dir", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="where runs are kept (default: $TUI_GPT_DATA_DIR or the user data dir)")

    parser = argparse.ArgumentParser(
        prog="tui-gpt", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and prompt GPT-2-style models in the terminal. Without a command, opens the app.",
    )
    parser.add_argument("--version", action=_ShowVersion)
    parser.set_defaults(handler=commands.launch_app)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")

    train = subparsers.add_parser("train", parents=[common], help="train a model (headless)", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train a model, printing progress; Ctrl-C stops after saving a checkpoint.")
    train.set_defaults(handler=commands.train)
    run = train.add_argument_group("run")
    # torchrun reads a bare --run as an abbreviation of its own --run-path, hence --run-name.
    run.add_argument("--run", "--run-name", dest="run", metavar="NAME",
                     help="name of the run (default: one is made up); under torchrun write --run-name")
    run.add_argument("--resume", action="store_true",
                     help="continue run NAME from its latest checkpoint with its stored settings; "
                          "options given here replace the stored ones")
    run.add_argument("--recipe", metavar="NAME", help="start from a named recipe ('book': the book's chapter 5 run)")
    run.add_argument("--log-every", metavar="N", type=int, default=10,
                     help="when not on a terminal, print a step line every N steps (default 10)")
    for title, options in _TRAIN_OPTIONS.items():
        group = train.add_argument_group(title)
        for flag, field, kind, metavar, help_text in options:
            group.add_argument(flag, dest=field, type=kind, metavar=metavar, help=help_text, default=argparse.SUPPRESS)
        if title == "checkpoints and hardware":
            for flag, field, help_text in _TRAIN_SWITCHES:
                group.add_argument(flag, dest=field, action="store_true", help=help_text, default=argparse.SUPPRESS)
        if title == "what to train":
            group.add_argument("--context-length", metavar="N", type=int,
                               help="the model's context length (replaces the preset's)")

    runs = subparsers.add_parser("runs", parents=[common], help="list (or delete) training runs",
                               description="List the training runs in the data dir.")
    runs.set_defaults(handler=commands.list_runs)
    runs.add_argument("--json", action="store_true", help="print JSON for scripts")
    runs_commands = runs.add_subparsers(title="commands", metavar="COMMAND")
    delete = runs_commands.add_parser("delete", parents=[common], help="delete a run and its checkpoints")
    delete.set_defaults(handler=commands.delete_run)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    generate = subparsers.add_parser(
        "generate", parents=[common], help="generate text from a run, a checkpoint or a model",
        description="Stream a continuation of the prompt; Ctrl-C stops it and keeps what was printed.",
    )
    generate.set_defaults(handler=commands.generate)
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="NAME", help="a training run (its latest checkpoint; see --best)")
    source.add_argument("--checkpoint", metavar="PATH", type=Path, help="a checkpoint folder")
    source.add_argument("--model", metavar="NAME|PATH",
                        help="a preset (fresh, untrained weights), gpt2, gpt2-medium, ..., a Hugging Face folder, "
                             "or a .safetensors/.pth file")
    generate.add_argument("--best", action="store_true", help="with --run: the checkpoint with the best val loss")
    generate.add_argument("--prompt", metavar="TEXT", help="the text to continue (default: read stdin when piped)")
    generate.add_argument("--max-new-tokens", metavar="N", type=int, default=50, help="default 50")
    generate.add_argument("--temperature", metavar="T", type=float, default=0.0,
                          help="0 picks the most likely token (default); higher samples more freely")
    generate.add_argument("--top-k", metavar="K", type=int, help="sample among the K most likely tokens")
    generate.add_argument("--top-p", metavar="P", type=float, help="sample among the most likely tokens up to mass P")
    generate.add_argument("--seed", metavar="N", type=int, help="seed for sampling and for a fresh preset's weights")
    generate.add_argument("--device", metavar="{auto,cpu,cuda,mps}", default="auto", help="default auto")
    return parser


class _ShowVersion(argparse.Action):
    """Like argparse's "version" action, but reads the version only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"{parser.prog} {tui_gpt.__version__}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return EXIT_ABORTED
    except BrokenPipeError:
        # The reader left (`tui-gpt generate ... | head`): stop quietly, and point stdout
        # at /dev/null so the interpreter's flush at exit does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # the one place where any failure becomes one line, never a traceback
        return _report_failure(exc, args)


# -- errors -----------------------------------------------------------------------------------


def print_error(message: str) -> None:
    print(f"tui-gpt: error: {_one_line(message)}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _report_failure(exc: Exception, args: argparse.Namespace) -> int:
    """Show `exc` as one line on stderr and return the exit code it deserves."""
    # Looked up, not imported: a TuiGptError means engine.errors is loaded, and a
    # failure to import the engine (a broken torch) must still end in one line.
    errors = sys.modules.get("engine.errors")
    if errors is not None and isinstance(exc, errors.TuiGptError):
        print_error(str(exc))
        return EXIT_BAD_INPUT
    if _is_out_of_memory(exc):
        print_error("out of memory; try a smaller --batch-size or --context-length")
        return EXIT_FAILED
    if isinstance(exc, OSError):
        print_error(f"{exc.filename}: {exc.strerror}" if exc.strerror and exc.filename else str(exc))
        return EXIT_BAD_INPUT
    log_path = _write_crash_log(exc, args)
    details = f"details in {log_path}" if log_path else "no log file could be written"
    print(f"tui-gpt: internal error: {type(exc).__name__}: {_one_line(exc)} ({details})", file=sys.stderr)
    return EXIT_FAILED


def _is_out_of_memory(exc: Exception) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def _write_crash_log(exc: Exception, args: argparse.Namespace) -> Path | None:
    """Append the traceback to `<data dir>/logs/internal-errors.log` (a temp file if that fails)."""
    report = (f"--- {dt.datetime.now().isoformat(timespec='seconds')} tui-gpt {tui_gpt.__version__}: "
              f"{shlex.join(sys.argv)}\n{''.join(traceback.format_exception(exc))}\n")
    candidates: list[Path] = []
    try:
        from engine.runs.store import default_data_dir

        candidates.append(default_data_dir(getattr(args, "data_dir", None)) / "logs" / "internal-errors.log")
    except Exception:
        pass  # the engine itself may be what failed to import: the temp dir will do
    candidates.append(Path(tempfile.gettempdir()) / "tui-gpt-internal-errors.log")
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as log:
                log.write(report)
            return path
        except OSError:
            continue
    return None
