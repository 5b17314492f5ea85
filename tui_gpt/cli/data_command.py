"""`tui-gpt data`: prepare a data source once, list, show and delete prepared data sets.

Like the rest of the CLI, nothing from the engine is imported until a command runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import Any

from tui_gpt.cli.main import EXIT_ABORTED, EXIT_FINISHED, print_error


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    data = subparsers.add_parser("data", parents=[common], help="prepare, list, show or delete data sets",
                                 description="Data sets tokenized once into the data dir's cache.")
    data.set_defaults(handler=list_data)
    commands = data.add_subparsers(title="commands", metavar="COMMAND")

    prepare = commands.add_parser("prepare", parents=[common], help="tokenize a source into the cache now",
                                  description="Tokenize SOURCE once (train does this itself when it needs to).")
    prepare.set_defaults(handler=prepare_data)
    prepare.add_argument("source", metavar="SOURCE", help="what --corpus takes: a file, a folder or hf:NAME")
    prepare.add_argument("--corpus-format", default="auto", metavar="FORMAT",
                         help="auto, text, jsonl, parquet, tokens or hf (default: auto)")
    prepare.add_argument("--text-field", default="text", metavar="NAME", help="field or column with the text")
    prepare.add_argument("--val-corpus", metavar="PATH", help="a separate validation source")
    prepare.add_argument("--train-ratio", type=float, metavar="R", help="share of documents that train (default 0.9)")
    prepare.add_argument("--seed", type=int, metavar="N", help="seed of the validation choice (train's --seed)")
    prepare.add_argument("--workers", type=int, metavar="N", help="tokenizer threads (default: all cores)")

    listing = commands.add_parser("list", parents=[common], help="list prepared data sets")
    listing.set_defaults(handler=list_data)
    show = commands.add_parser("show", parents=[common], help="sizes and a sample of a prepared data set")
    show.set_defaults(handler=show_data)
    show.add_argument("name", metavar="NAME", help="its key (or a prefix) or its source's name")
    delete = commands.add_parser("delete", parents=[common], help="delete a prepared data set")
    delete.set_defaults(handler=delete_data)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _cache_dir(args: argparse.Namespace):
    from engine.runs.store import RunStore

    return RunStore(getattr(args, "data_dir", None)).cache_dir


def prepare_data(args: argparse.Namespace) -> int:
    from engine.data.training_data import load_training_data
    from engine.training.settings import TrainConfig

    defaults = TrainConfig()  # the same split as a `train` with default options, so train reuses it
    progress = PrepareProgress(sys.stderr, live=sys.stderr.isatty())
    try:
        data = load_training_data(
            args.source, _cache_dir(args), corpus_format=args.corpus_format, text_field=args.text_field,
            val_corpus=args.val_corpus, train_ratio=args.train_ratio or defaults.train_ratio,
            seed=defaults.seed if args.seed is None else args.seed, workers=args.workers, on_progress=progress,
        )
    except KeyboardInterrupt:
        progress.close()
        print_error("preparation stopped; its finished shards are kept: run the same command to continue")
        return EXIT_ABORTED
    finally:
        progress.close()
    for warning in data.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = data.cache_path or data.path
    print(f"{data.name}: {len(data.train):,} training and {len(data.val):,} validation tokens in {where}")
    return EXIT_FINISHED


class PrepareProgress:
    """One line redrawn on a terminal: MB/s, tokens, documents, ETA; nothing when not a terminal."""

    def __init__(self, stream, live: bool, min_interval: float = 0.2):
        self.stream, self.live, self.min_interval = stream, live, min_interval
        self.last = float("-inf")
        self.shown = False

    def __call__(self, progress) -> None:
        now = time.monotonic()
        if not self.live or now - self.last < self.min_interval:
            return
        self.last = now
        from tui_gpt.formatting import describe_preparation

        line = describe_preparation(progress)
        self.stream.write("\r\x1b[K" + line[: shutil.get_terminal_size().columns - 1])
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:  # end the redrawn line, once
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def list_data(args: argparse.Namespace) -> int:
    from engine.data.prepare import list_prepared

    from tui_gpt.formatting import human_size

    entries = list_prepared(_cache_dir(args))
    if not entries:
        print("no prepared data sets (tui-gpt data prepare SOURCE, or train on one)")
        return EXIT_FINISHED
    rows = [("NAME", "SOURCE", "STATE", "TRAIN TOKENS", "VAL TOKENS", "ON DISK")]
    for entry in entries:
        meta = entry.meta or {}
        rows.append((entry.name[:12], str(entry.description.get("spec", entry.description.get("name"))),
                     "ready" if entry.meta else "partial", f"{meta.get('train_tokens', 0):,}",
                     f"{meta.get('val_tokens', 0):,}", human_size(entry.disk_bytes())))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_FINISHED


def show_data(args: argparse.Namespace) -> int:
    from engine.data.prepare import find_prepared, open_prepared
    from engine.model.tokenizer import get_tokenizer

    entry = find_prepared(_cache_dir(args), args.name)
    print(f"name:        {entry.name}")
    print(f"source:      {entry.description.get('spec')}")
    if entry.meta is None:
        print("state:       partial (interrupted; `tui-gpt data prepare` the source again to finish it)")
        return EXIT_FINISHED
    meta: dict[str, Any] = entry.meta
    tokens = meta["train_tokens"] + meta["val_tokens"]
    text_bytes = meta["train_bytes"] + meta["val_bytes"]
    validation = meta["source"]["validation"]
    how = (f"source {validation['source']}" if "source" in validation
           else f"{validation['fraction']:.0%} of documents, seed {validation['seed']}")
    print(f"documents:   {meta['train_documents'] + meta['val_documents']:,} "
          f"({meta['train_documents']:,} train, {meta['val_documents']:,} val)")
    print(f"tokens:      {tokens:,} ({meta['train_tokens']:,} train, {meta['val_tokens']:,} val)")
    print(f"bytes:       {text_bytes:,} of UTF-8 text, {text_bytes / max(tokens, 1):.2f} bytes/token")
    print(f"validation:  {how}")
    print(f"shards:      {len(meta['shards'])}")
    for warning in meta["warnings"]:
        print(f"warning:     {warning}")
    train = open_prepared(entry.folder, meta).train
    sample = get_tokenizer().decode([int(t) for t in train[: min(len(train), 64)]])
    print(f"sample:      {' '.join(sample.split())[:300]}")
    return EXIT_FINISHED


def delete_data(args: argparse.Namespace) -> int:
    from engine.data.prepare import find_prepared
    from engine.errors import CorpusError

    entry = find_prepared(_cache_dir(args), args.name)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CorpusError(f"not deleting {entry.name} without confirmation; add --yes")
        if input(f"delete prepared data {entry.name} ({entry.description.get('spec')})? [y/N] ").strip().lower() != "y":
            print_error("not deleted")
            return 1
    shutil.rmtree(entry.folder)
    print(f"deleted {entry.folder}")
    return EXIT_FINISHED
