"""`tui-gpt export`: a run's checkpoint, a checkpoint folder or any model, as a Hugging Face folder or a GGUF file."""

from __future__ import annotations

import argparse
import sys

FORMATS_HELP = "hf (a transformers folder) or gguf (llama.cpp, Ollama)"


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser(
        "export", parents=[common], help="export a model for transformers, llama.cpp or Ollama",
        description="Write a model as a Hugging Face folder (--format hf) or a GGUF file with an Ollama Modelfile "
                    "beside it (--format gguf), with a model card. An existing OUT is replaced only with --force.",
    )
    export.set_defaults(handler=export_model)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-name", metavar="NAME", help="a training run (its latest checkpoint; see --best)")
    source.add_argument("--checkpoint", metavar="PATH", help="a checkpoint folder")
    source.add_argument("--model", metavar="NAME|PATH",
                        help="anything `generate --model` takes: gpt2, a Hugging Face folder, a nanoGPT ckpt.pt, "
                             "an llm.c .bin, a .safetensors/.pth file")
    export.add_argument("--best", action="store_true", help="with --run-name: the checkpoint with the best val loss")
    export.add_argument("--format", required=True, metavar="FORMAT", help=FORMATS_HELP)
    export.add_argument("--gguf-type", metavar="TYPE", default="f16",
                        help="GGUF weights: f32, f16 (default) or q8_0")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    export.add_argument("out", metavar="OUT", help="the folder (hf) or .gguf file (gguf) to write")


def export_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.errors import ConfigError
    from engine.runs.store import RunStore
    from engine.weights.export import (
        ExportRequest,
        load_checkpoint_for_export,
        load_run_for_export,
        load_spec_for_export,
    )

    if args.best and not args.run_name:
        raise ConfigError("--best goes with --run-name NAME")
    request = ExportRequest(args.format, Path(args.out).expanduser(), args.gguf_type, args.force)
    request.check()  # before any weights are read
    if args.run_name:
        model, card = load_run_for_export(RunStore(getattr(args, "data_dir", None)).open(args.run_name), args.best)
    elif args.checkpoint:
        model, card = load_checkpoint_for_export(Path(args.checkpoint).expanduser())
    else:
        model, card = load_spec_for_export(args.model)
    print(f"exporting {card.origin}", file=sys.stderr)
    for path in request.write(model, card):
        print(path)
    return 0
