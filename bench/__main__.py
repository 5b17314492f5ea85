"""`python -m bench`: run the benchmark and print its Markdown table."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Sequence

import torch

from engine.fast.allocator import keep_freed_memory
from engine.model.config import GPTConfig

from .cases import Settings
from .harness import case_table, run_benchmark
from .report import render_markdown

# The smallest settings that still run every code path: for tests, figures are meaningless.
SMOKE_LARGE = GPTConfig(context_length=64, emb_dim=64, n_heads=4, n_layers=2, drop_rate=0.1)
SMOKE_SMALL = GPTConfig(context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time the engine against the book's textbook code and Hugging Face transformers, "
                    "side by side in one process, and print a Markdown table.")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="fewer repeats and tokens, smaller corpora (about five minutes on 2 cores)")
    speed.add_argument("--smoke", action="store_true",
                       help="tiny models and one repeat: checks that every case runs; the figures mean nothing")
    parser.add_argument("--cases", metavar="A,B", help="comma-separated cases to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, metavar="N", help="timed runs per contender")
    parser.add_argument("--decode-tokens", type=int, metavar="N", help="new tokens per decoding run (default 200)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's training model")
    parser.add_argument("--no-peers", action="store_true", help="time the engine alone (no textbook, no transformers)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator as it is, as a process that does not call "
                             "engine.fast.allocator runs (default: keep freed memory, as `tui-gpt train` does)")
    parser.add_argument("--tokenize-mb", type=float, metavar="MB",
                        help="size of the generated JSON Lines corpus of the tokenize case (default 256)")
    parser.add_argument("--tokenize-rss-mb", type=float, metavar="MB",
                        help="the larger corpus of the tokenize-memory case (default 2048)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="also write the report to FILE")
    return parser


def settings_from(args: argparse.Namespace, argv: Sequence[str]) -> Settings:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    s = Settings(device=device, command_line="".join(" " + shlex.quote(a) for a in argv))
    if device.type == "cuda":
        # nanoGPT's setting for GPT-2 124M; decoding in bf16, the GPU's native precision.
        s = dataclasses.replace(s, train_context=1024, train_batch=16, decode_variants=("engine-bf16",))
    if args.quick:
        s = dataclasses.replace(s, repeats=2, decode_repeats=2, decode_tokens=32, long_prompt_tokens=128,
                                tui_preset="gpt-micro", tokenize_mb=32, tokenize_rss_mb=256, stall_steps=10,
                                book_preset="gpt-micro")
    if args.smoke:
        s = dataclasses.replace(s, repeats=1, decode_repeats=1, warmup=0, large=SMOKE_LARGE, small=SMOKE_SMALL,
                                train_context=SMOKE_LARGE.context_length, train_batch=2, small_train_batch=2,
                                decode_tokens=8, long_prompt_tokens=48, tui_preset="gpt-nano",
                                memory_steps=2, tokenize_mb=1, tokenize_rss_mb=2, stall_preset="gpt-nano",
                                stall_batch=2, stall_steps=3, stall_tokens=2**16, book_epochs=1,
                                book_preset="gpt-nano", book_context=64, book_chars=8000)
    if args.repeats:
        s = dataclasses.replace(s, repeats=args.repeats, decode_repeats=args.repeats)
    if args.decode_tokens:
        s = dataclasses.replace(s, decode_tokens=args.decode_tokens)
    if args.tokenize_mb:
        s = dataclasses.replace(s, tokenize_mb=args.tokenize_mb)
    if args.tokenize_rss_mb:
        s = dataclasses.replace(s, tokenize_rss_mb=args.tokenize_rss_mb)
    if args.no_peers:
        s = dataclasses.replace(s, peers=())
    if args.compile:
        # The first steps compile (train mode, then a recompile or two): never time them.
        s = dataclasses.replace(s, compile=True, warmup=max(s.warmup, 2))
    return s


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu, cuda or auto, not {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but no CUDA GPU is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = settings_from(args, argv)
    table = case_table(settings)
    if args.list:
        print("\n".join(table))
        return 0
    names = [name.strip() for name in args.cases.split(",")] if args.cases else list(table)
    unknown = [name for name in names if name not in table]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from: {', '.join(table)}")
    # For the whole process, before any case allocates: every contender runs under it.
    memory_kept = False if args.default_allocator else keep_freed_memory()
    header, results = run_benchmark(settings, names, memory_kept,
                                    say=lambda line: print(f"[bench] {line}", file=sys.stderr))
    report = render_markdown(header, results)
    print(report)
    if args.output:
        args.output.write_text(report, encoding="utf-8")
    failed = [check for result in results for check in result.checks if not check.passed]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
