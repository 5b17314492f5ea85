"""What `tui-gpt` does for each command: train, runs, runs delete, generate, or open the app.

`tui_gpt.cli.main` parses the command line and turns failures into one line; the
functions here do the work. Like the parser, this module imports no torch at
import time (only the engine's torch-free run folder contract): each command
imports what it needs when it runs.
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

from engine.runs.exit_codes import EXIT_FAILED, EXIT_FINISHED, EXIT_STOPPED
from tui_gpt.cli.main import print_error
from tui_gpt.formatting import format_number, human_size


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
    # With --max-steps the steps alone decide the length: an epoch count would read "epoch 15/1".
    progress = TrainingProgress(sys.stdout, live=sys.stdout.isatty(), epochs=None if config.max_steps else config.epochs,
                                log_every=args.log_every)
    stop = GracefulStop()
    keep_freed_memory()  # this process trains: reuse each step's memory (about a tenth faster on a CPU)
    with _signal_handlers_restored():
        stop.install()
        try:
            outcome = train_run(
                config, run_name=args.run_name, data_dir=store.data_dir, resume=args.resume,
                corpus_named=args.resume and hasattr(args, "corpus"),
                on_event=_announcing_run_folder(progress, store) if talks else None,
                should_stop=lambda: stop.requested, log=progress.log if talks else None,
            )
        finally:
            progress.close()

    if outcome.state == "finished":
        if talks:
            print(f"run {outcome.run_name} finished at step {outcome.step}. Try it: "
                  f"{_command_line(args, 'generate', '--run-name', outcome.run_name, '--prompt', config.start_context)}")
        return EXIT_FINISHED
    if outcome.state == "stopped":
        if talks:
            print(f"run {outcome.run_name} stopped at step {outcome.step}; its checkpoint is saved. Resume with: "
                  f"{_command_line(args, 'train', '--run-name', outcome.run_name, '--resume')}")
        return EXIT_STOPPED
    print_error(f"run {outcome.run_name} failed at step {outcome.step}: {outcome.message}")
    return EXIT_FAILED


def _train_config(args: argparse.Namespace, store):
    """The recipe (or the defaults), or the resumed run's stored settings, with the given options on top."""
    from engine.errors import ConfigError
    from engine.training.settings import SETTINGS, TrainConfig, get_recipe, resumed_config

    given: dict[str, Any] = {s.name: getattr(args, s.name) for s in SETTINGS if hasattr(args, s.name)}
    if args.run_name == "":
        raise ConfigError("--run-name must not be empty; leave it out to have a name made up")
    if args.resume:
        if args.run_name is None:
            raise ConfigError("--resume needs the name of the run to continue: --run-name NAME")
        if args.recipe:  # the same command as at the start: the recipe must describe the run's model
            given = {**_model_settings_of(get_recipe(args.recipe), SETTINGS), **given}
        return resumed_config(store.open(args.run_name).read_config(), given)
    base = get_recipe(args.recipe) if args.recipe else TrainConfig()
    return base.with_settings(given)


def _model_settings_of(config, settings) -> dict[str, Any]:
    """The settings of `config` that decide the model (and so must not change on resume)."""
    values = {}
    for declared in settings:
        if declared.fixed_on_resume:
            source = config.model_overrides if declared.model else config.to_dict()
            if declared.name in source:
                values[declared.name] = source[declared.name]
    return values


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
        (run.name, run.model, str(run.steps), format_number(run.best_val_loss, ".3f"),
         format_number(run.best_val_ppl, ".1f"), format_number(run.progress.best_val_bpb, ".3f"),
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
            "best_val_ppl": run.best_val_ppl, "best_val_bpb": run.progress.best_val_bpb, "updated": run.updated.isoformat(), "size_bytes": run.size_bytes,
            "state": run.state, "message": run.message}


# -- generate ------------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> int:
    _hash_checkpoint_ahead(args)  # while torch is imported below
    from engine.fast.decoding_weights import prompting_model
    from engine.training.device import resolve_device
    from engine.model.generation import stream
    from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer

    _check_sampling_options(args)
    prompt = _read_prompt(args)
    device = resolve_device(args.device)
    model = prompting_model(_load_model_to_generate(args, device), in_place=True)
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


def _hash_checkpoint_ahead(args: argparse.Namespace) -> None:
    """Start checking the SHA-256 of the checkpoint `--run-name` or `--checkpoint` names, in the background.

    Loading checks it anyway; started before torch is imported, the two overlap on a
    second core (about half a second for a 124M model here). Anything amiss is left
    for the load to report in its own words.
    """
    from engine.errors import TuiGptError
    from engine.runs.checkpoints import MANIFEST, MODEL_CONFIG, MODEL_WEIGHTS, best_checkpoint, latest_checkpoint
    from engine.runs.untrusted_files import hash_ahead

    try:
        if args.run_name is not None:
            run = _run_store(args).open(args.run_name)
            info = (best_checkpoint if args.best else latest_checkpoint)(run.checkpoints_dir)
            folder = info.path if info else None
        elif args.checkpoint is not None:
            folder = Path(args.checkpoint)
            folder = folder if folder.is_dir() else folder.parent
        else:
            folder = None
        if folder is not None and (folder / MANIFEST).is_file():
            hash_ahead([folder / MODEL_WEIGHTS, folder / MODEL_CONFIG])
    except (TuiGptError, OSError):
        pass


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
    if args.best and args.run_name is None:
        raise ConfigError("--best goes with --run-name NAME")


# Far more than any context window holds (the model sees only its last context_length tokens).
MAX_PROMPT_CHARS = 1 << 20


def _read_prompt(args: argparse.Namespace) -> str:
    from engine.errors import ConfigError

    if args.prompt is not None:
        return args.prompt
    if sys.stdin is None or sys.stdin.isatty():
        raise ConfigError("give the text to continue with --prompt TEXT (or pipe it on stdin)")
    text = sys.stdin.read(MAX_PROMPT_CHARS + 1)  # bounded: `generate < /dev/zero` must not eat all memory
    if len(text) > MAX_PROMPT_CHARS:
        raise ConfigError(f"the prompt on standard input is longer than {MAX_PROMPT_CHARS:,} characters")
    return text


def _load_model_to_generate(args: argparse.Namespace, device):
    return load_model(chosen_model(args), device, args.seed)


def chosen_model(args: argparse.Namespace):
    """The engine.weights.resolver.ModelSpec of a command's --run-name [--best] | --checkpoint | --model."""
    from engine.weights.resolver import ModelSpec

    if args.run_name is not None:
        return ModelSpec(args.run_name, kind="run", best=args.best, data_dir=_explicit_data_dir(args))
    if args.checkpoint is not None:
        return ModelSpec(str(args.checkpoint), kind="checkpoint")
    return ModelSpec(args.model)


def load_model(spec, device, seed: int | None = None):
    """The model `spec` names, saying on stderr what was loaded; `seed` decides a fresh preset's weights."""
    import torch

    from engine.weights.resolver import resolve_model

    if seed is not None and spec.kind == "any":
        torch.manual_seed(seed)  # a preset's fresh weights come from the global generator
    resolved = resolve_model(spec, device=str(device))
    if spec.kind == "run":
        print(f"checkpoint: {resolved.path}", file=sys.stderr)
    elif spec.kind == "any":
        print(f"model: {resolved.description}", file=sys.stderr)
    for note in resolved.notes:
        print(f"note: {note}", file=sys.stderr)
    return resolved.model
