"""What `tui-gpt` does for each command: train, runs, runs delete, generate, or open the app.

`tui_gpt.cli.main` parses the command line and turns failures into one line; the
functions here do the work. Like the parser, this module imports no torch and
no engine at import time: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from tui_gpt.cli.main import EXIT_FAILED, EXIT_FINISHED, EXIT_STOPPED, TRAIN_FIELDS, print_error

# Options that decide the model's shape or weights, which a resumed run keeps.
_FIXED_ON_RESUME = ("--recipe", "--preset", "--context-length", "--init-from")


def _explicit_data_dir(args: argparse.Namespace) -> Path | None:
    return getattr(args, "data_dir", None)


def _run_store(args: argparse.Namespace):
    from engine.runs.store import RunStore

    return RunStore(_explicit_data_dir(args))


def launch_app(args: argparse.Namespace) -> int:
    from tui_gpt.app.app import run_app

    run_app(data_dir=_explicit_data_dir(args))
    return 0


# -- train ---------------------------------------------------------------------------


def train(args: argparse.Namespace) -> int:
    store = _run_store(args)
    config = _train_config(args, store)  # bad options fail here, before the trainer's heavier imports

    from engine.fast.allocator import keep_freed_memory
    from engine.training.signals import GracefulStop
    from engine.training.trainer import train_run

    from tui_gpt.cli.progress import TrainingProgress

    # Under torchrun every rank runs this; only the first one talks.
    talks = os.environ.get("RANK", "") in ("", "0")
    progress = TrainingProgress(sys.stdout, live=sys.stdout.isatty(), epochs=config.epochs,
                                log_every=args.log_every)
    stop = GracefulStop()
    keep_freed_memory()  # this process trains: reuse each step's memory (about a tenth faster on a CPU)
    with _signal_handlers_restored():
        stop.install()
        try:
            outcome = train_run(
                config, run_name=args.run, data_dir=store.data_dir, resume=args.resume,
                on_event=_announcing_run_folder(progress, store) if talks else None,
                should_stop=lambda: stop.requested, log=progress.log if talks else None,
            )
        finally:
            progress.close()

    if outcome.state == "finished":
        if talks:
            print(f"run {outcome.run_name} finished at step {outcome.step}. Try it: "
                  f"{_command_line(args, 'generate', '--run', outcome.run_name, '--prompt', config.start_context)}")
        return EXIT_FINISHED
    if outcome.state == "stopped":
        if talks:
            print(f"run {outcome.run_name} stopped at step {outcome.step}; its checkpoint is saved. Resume with: "
                  f"{_command_line(args, 'train', '--run', outcome.run_name, '--resume')}")
        return EXIT_STOPPED
    print_error(f"run {outcome.run_name} failed at step {outcome.step}: {outcome.message}")
    return EXIT_FAILED


def _train_config(args: argparse.Namespace, store):
    """The recipe (or the defaults), or the resumed run's stored settings, with the given options on top."""
    from engine.errors import ConfigError
    from engine.training.settings import TrainConfig, get_recipe

    overrides: dict[str, Any] = {field: getattr(args, field) for field in TRAIN_FIELDS if hasattr(args, field)}
    if args.resume:
        if not args.run:
            raise ConfigError("--resume needs the name of the run to continue: --run NAME")
        given = {"--recipe": args.recipe is not None, "--preset": "preset" in overrides,
                 "--context-length": args.context_length is not None, "--init-from": "init_from" in overrides}
        fixed = [flag for flag in _FIXED_ON_RESUME if given[flag]]
        if fixed:
            raise ConfigError(f"{fixed[0]} cannot be changed when resuming: the run keeps its model")
        stored = store.open(args.run).read_config()["train"]
        return TrainConfig.from_dict(stored).with_overrides(**overrides)
    base = get_recipe(args.recipe) if args.recipe else TrainConfig()
    if args.context_length is not None:
        overrides["model_overrides"] = {**base.model_overrides, "context_length": args.context_length}
    return base.with_overrides(**overrides)


def _announcing_run_folder(progress, store) -> Callable[[Any], None]:
    """Print where the run lives as soon as the trainer says which run it is."""
    from engine.runs.events import RunStarted

    def on_event(event) -> None:
        if isinstance(event, RunStarted):
            progress.log(f"run {event.run}: {store.open(event.run).dir}")
        progress.on_event(event)

    return on_event


_STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def _signal_handlers_restored() -> Iterator[None]:
    """Put back the handlers GracefulStop replaces, so main() leaves the process as it found it."""
    saved = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _command_line(args: argparse.Namespace, *words: str) -> str:
    """A copy-pasteable `tui-gpt ...` line that also names the data dir when one was given."""
    data_dir = _explicit_data_dir(args)
    explicit = ["--data-dir", str(data_dir)] if data_dir else []
    return shlex.join(["tui-gpt", words[0], *explicit, *words[1:]])


# -- runs ------------------------------------------------------------------------------


def list_runs(args: argparse.Namespace) -> int:
    store = _run_store(args)
    runs = store.list()
    if args.json:
        print(json.dumps([_run_as_json(run) for run in runs], indent=2))
    elif not runs:
        print(f"no runs yet in {store.data_dir}")
    else:
        print(_runs_table(runs))
    return 0


def delete_run(args: argparse.Namespace) -> int:
    from engine.errors import RunError

    store = _run_store(args)
    run = store.open(args.name)  # fails with a clear message when there is no such run
    if not args.yes:
        if not sys.stdin.isatty():
            raise RunError(f"not deleting run {args.name!r} without confirmation; add --yes")
        answer = input(f"delete run {args.name!r} and all its checkpoints ({run.dir})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    store.delete(args.name)
    print(f"deleted run {args.name}")
    return 0


_COLUMNS = ("NAME", "MODEL", "STEPS", "BEST VAL LOSS", "BEST VAL PPL", "BPB", "UPDATED", "SIZE", "STATE")


def _runs_table(runs) -> str:
    rows = [_COLUMNS] + [
        (run.name, run.model, str(run.steps), _number(run.best_val_loss, ".3f"), _number(run.best_val_ppl, ".1f"),
         _number(run.best_val_bpb, ".3f"),
         run.updated.astimezone().strftime("%Y-%m-%d %H:%M"), human_size(run.size_bytes), run.state)
        for run in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    numeric = {2, 3, 4, 5, 7}
    lines = [
        "  ".join(cell.rjust(width) if i in numeric else cell.ljust(width)
                  for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def _run_as_json(run) -> dict[str, Any]:
    return {"name": run.name, "model": run.model, "steps": run.steps, "best_val_loss": run.best_val_loss,
            "best_val_ppl": run.best_val_ppl, "best_val_bpb": run.best_val_bpb, "updated": run.updated.isoformat(), "size_bytes": run.size_bytes,
            "state": run.state, "message": run.message}


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def human_size(size: int) -> str:
    """Bytes for people: '512 B', '3.4 KB', '1.2 GB' (powers of 1024)."""
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


# -- generate ------------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> int:
    from engine.fast.decoding_weights import prompting_model
    from engine.training.device import resolve_device
    from engine.model.generation import stream
    from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer

    _check_sampling_options(args)
    prompt = _read_prompt(args)
    device = resolve_device(args.device)
    model = prompting_model(_load_model_to_generate(args, device))
    out = sys.stdout
    out.write(prompt)
    out.flush()
    tokens = stream(model, get_tokenizer(), prompt, args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p, eos_id=END_OF_TEXT_ID, seed=args.seed)
    try:
        for token in tokens:
            if token.token_id == END_OF_TEXT_ID:
                break
            out.write(token.text)
            out.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the text; what was printed stays
    finally:
        tokens.close()
        out.write("\n")
        out.flush()
    return 0


def _check_sampling_options(args: argparse.Namespace) -> None:
    from engine.errors import ConfigError

    if args.max_new_tokens < 0:
        raise ConfigError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.best and not args.run:
        raise ConfigError("--best goes with --run NAME")


def _read_prompt(args: argparse.Namespace) -> str:
    from engine.errors import ConfigError

    if args.prompt is not None:
        return args.prompt
    if sys.stdin is None or sys.stdin.isatty():
        raise ConfigError("give the text to continue with --prompt TEXT (or pipe it on stdin)")
    return sys.stdin.read()


def _load_model_to_generate(args: argparse.Namespace, device):
    import torch

    from engine.runs.checkpoints import best_checkpoint, latest_checkpoint

    from engine.weights.checkpoint import load_model
    from engine.errors import CheckpointError
    from engine.weights.pretrained import load_any_model

    if args.model is not None:
        if args.seed is not None:
            torch.manual_seed(args.seed)  # a preset's fresh weights come from the global generator
        model, description = load_any_model(args.model, device=str(device))
        print(f"model: {description}", file=sys.stderr)
        return model
    if args.run is not None:
        run = _run_store(args).open(args.run)
        find = best_checkpoint if args.best else latest_checkpoint
        info = find(run.checkpoints_dir)
        if info is None:
            raise CheckpointError(f"run {args.run!r} has no {'best ' if args.best else ''}checkpoint yet")
        print(f"checkpoint: {info.path}", file=sys.stderr)
        path = info.path
    else:
        path = args.checkpoint
    model, notes = load_model(path, device=str(device))
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return model
