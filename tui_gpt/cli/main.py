"""The `tui-gpt` command: the Textual app, or `train`, `runs` and `generate` without it.

Nothing heavy is imported at module level (no torch; from the engine only its
torch-free errors and exit codes): `tui-gpt --help` answers at once, the app's
first frame is not held up, and a broken torch install still ends in one line.
Each command imports what it needs when it runs.
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
from engine.errors import TuiGptError
from engine.runs.exit_codes import EXIT_ABORTED, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_FINISHED, EXIT_STOPPED

EPILOG = f"""\
exit codes:
  {EXIT_FINISHED:<4} finished
  {EXIT_FAILED:<4} failed (an error during training or generation)
  {EXIT_BAD_INPUT:<4} bad input (usage, config, corpus, checkpoint or run errors); nothing was trained
  {EXIT_STOPPED:<4} stopped on request (Ctrl-C, SIGTERM, SIGHUP) after saving a checkpoint; continue with --resume
  {EXIT_ABORTED:<4} second Ctrl-C: left at once, keeping the last saved checkpoint

data dir: --data-dir, else $TUI_GPT_DATA_DIR, else the user data dir for tui-gpt.
"""

def build_parser() -> argparse.ArgumentParser:
    from tui_gpt.cli import commands, export, insight_commands  # here, not at the top: commands imports this module

    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    # SUPPRESS: a --data-dir given before the subcommand is not reset by the subcommand's default.
    common.add_argument("--data-dir", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="where runs are kept (default: $TUI_GPT_DATA_DIR or the user data dir)")

    parser = argparse.ArgumentParser(
        prog="tui-gpt", parents=[common], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        description="Train and prompt GPT-2-style models in the terminal. Without a command, opens the app.",
    )
    parser.add_argument("--version", action=_ShowVersion)
    parser.set_defaults(handler=commands.launch_app)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")

    train = subparsers.add_parser("train", parents=[common], help="train a model (headless)", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                                description="Train a model, printing progress; Ctrl-C stops after saving a checkpoint.")
    train.set_defaults(handler=commands.train)
    run = train.add_argument_group("run")
    add_run_name(run, "name of the run (default: one is made up)")
    run.add_argument("--resume", action="store_true",
                     help="continue run NAME from its latest checkpoint with its stored settings and corpus; "
                          "options given here replace the stored ones (those that decide the model must match)")
    run.add_argument("--recipe", metavar="NAME", help="start from a named recipe ('book': the book's chapter 5 run)")
    run.add_argument("--log-every", metavar="N", type=int, default=10,
                     help="when not on a terminal, print a step line every N steps (default 10)")
    _add_training_settings(train)

    runs = subparsers.add_parser("runs", parents=[common], help="list (or delete) training runs", allow_abbrev=False,
                               description="List the training runs in the data dir.")
    runs.set_defaults(handler=commands.list_runs)
    runs.add_argument("--json", action="store_true", help="print JSON for scripts")
    runs_commands = runs.add_subparsers(title="commands", metavar="COMMAND")
    delete = runs_commands.add_parser("delete", parents=[common], help="delete a run and its checkpoints",
                                      allow_abbrev=False)
    delete.set_defaults(handler=commands.delete_run)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    from tui_gpt.cli import data_command

    data_command.add_parser(subparsers, common)

    generate = subparsers.add_parser(
        "generate", parents=[common], help="generate text from a run, a checkpoint or a model", allow_abbrev=False,
        description="Stream a continuation of the prompt; Ctrl-C stops it and keeps what was printed.",
    )
    generate.set_defaults(handler=commands.generate)
    source = generate.add_mutually_exclusive_group(required=True)
    add_run_name(source, "a training run (its latest checkpoint; see --best)")
    source.add_argument("--checkpoint", metavar="PATH", type=Path, help="a checkpoint folder")
    source.add_argument("--model", metavar="NAME|PATH",
                        help="a preset (fresh, untrained weights), gpt2, gpt2-medium, ..., a Hugging Face folder, "
                             "or a .safetensors/.pth file")
    generate.add_argument("--best", action="store_true", help="with --run-name: the checkpoint with the best val loss")
    generate.add_argument("--prompt", metavar="TEXT", help="the text to continue (default: read stdin when piped)")
    generate.add_argument("--max-new-tokens", metavar="N", type=int, default=50, help="default 50")
    generate.add_argument("--temperature", metavar="T", type=float, default=0.0,
                          help="0 picks the most likely token (default); higher samples more freely")
    generate.add_argument("--top-k", metavar="K", type=int, help="sample among the K most likely tokens")
    generate.add_argument("--top-p", metavar="P", type=float, help="sample among the most likely tokens up to mass P")
    generate.add_argument("--seed", metavar="N", type=int, help="seed for sampling and for a fresh preset's weights")
    generate.add_argument("--device", metavar="{auto,cpu,cuda,mps}", default="auto", help="default auto")
    insight_commands.add_parsers(subparsers, common)  # score, lens, attention, compare
    export.add_parser(subparsers, common)
    return parser


def _add_training_settings(train: argparse.ArgumentParser) -> None:
    """An option for each declared training setting, in the help sections the settings name.

    No defaults (SUPPRESS): they come from the recipe or TrainConfig, so the namespace
    holds only the settings actually given, which on --resume replace the run's.
    """
    from engine.training.settings import SETTINGS, TrainConfig  # torch-free, and only when the parser is built

    defaults = TrainConfig()
    groups = {}
    for declared in SETTINGS:
        if declared.section not in groups:
            groups[declared.section] = train.add_argument_group(declared.section)
        group = groups[declared.section]
        default = None if declared.model else getattr(defaults, declared.name)  # a model's: its preset's
        help_text = declared.help + (f" (default: {default})" if default is not None else "")
        if declared.kind is bool:
            group.add_argument(declared.flag, dest=declared.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"{declared.help} (default: {'yes' if default else 'no'})")
            continue
        metavar = "{" + ",".join(declared.choices) + "}" if declared.choices else declared.metavar
        if declared.also:
            help_text += f"; also {declared.also[1]}"
        group.add_argument(declared.flag, dest=declared.name, type=declared.kind, metavar=metavar,
                           help=help_text, default=argparse.SUPPRESS)


class _ShowVersion(argparse.Action):
    """Like argparse's "version" action, but reads the version only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser.exit(message=f"{parser.prog} {tui_gpt.__version__}\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if _gives_old_run_option(argv):
        print_error("--run is now --run-name: write --run-name NAME")
        return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    code = _run_command(args)
    if _is_torchrun_rank():
        _leave_now(code)
    return code


def _run_command(args: argparse.Namespace) -> int:
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


def _is_torchrun_rank() -> bool:
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1") and "torch.distributed" in sys.modules


def _leave_now(code: int) -> None:
    """End a torchrun rank without the interpreter's finalization, once everything is written.

    The process group outlives destroy_process_group where something still refers to it
    (FSDP's device mesh does), and gloo's worker threads keep tensors from the last
    collectives. Freeing those while the interpreter is being torn down can abort the
    process ("terminate called without an active exception"), and torchrun then reports
    a run that finished and saved as failed. Every file the run wrote is closed by now.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, a closed stream: nothing more to say
            pass
    os._exit(code)


# -- the run's name ---------------------------------------------------------------------------

# The one spelling of a run's name on every command: torchrun takes a bare --run for an
# abbreviation of its own --run-path, so `torchrun ... -m tui_gpt train --run NAME` cannot work.
def add_run_name(parser, help: str) -> None:
    """The run option of a command: `--run-name NAME`, read as `args.run_name`."""
    parser.add_argument("--run-name", dest="run_name", metavar="NAME", help=help)


def _gives_old_run_option(argv: Sequence[str]) -> bool:
    words = argv[:argv.index("--")] if "--" in argv else argv
    return any(word == "--run" or word.startswith("--run=") for word in words)


# -- errors -----------------------------------------------------------------------------------


def print_error(message: str) -> None:
    # One write, so that torchrun's ranks, which share stderr and end together, never interleave a line.
    sys.stderr.write(f"tui-gpt: error: {_one_line(message)}\n")
    sys.stderr.flush()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _report_failure(exc: Exception, args: argparse.Namespace) -> int:
    """Show `exc` as one line on stderr and return the exit code it deserves."""
    if isinstance(exc, TuiGptError):
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
