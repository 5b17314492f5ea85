"""One benchmark run: the chosen cases, then the report's header."""

from __future__ import annotations

import datetime as dt
import gc
from typing import Callable


from engine.model.config import PRESETS, GPTConfig
from engine.training.mfu import gpu_peak_flops

from .book_run import book_run_case
from .cases import Settings, bf16_train_case, decode_case, first_token_case, train_case
from .input_stall import input_stall_case
from .machine import LoadMonitor, describe_machine
from .report import CaseResult
from .scoring import scoring_case
from .tokenizing import tokenize_case, tokenize_memory_case
from .train_memory import cli_memory_case, memory_case
from .tui import first_frame_case, tui_stream_case


def case_table(settings: Settings) -> dict[str, Callable[[], CaseResult]]:
    """Every case by name, in the order they run."""
    s = settings
    large_train = s.large.with_overrides(context_length=s.train_context)
    # The targets are set for the 124M model (decoding: 200 tokens); smaller
    # stand-ins and shorter runs only show that the cases run.
    targets = _size(s.large) == "124M"
    n = s.decode_tokens
    return {
        "train-124m": lambda: train_case(
            s, large_train, s.train_batch,
            f"train step, {_size(s.large)} ctx {s.train_context} batch {s.train_batch}", with_targets=targets),
        "train-small": lambda: train_case(
            s, s.small, s.small_train_batch,
            f"train step, {_size(s.small)} ctx {s.small.context_length} batch {s.small_train_batch}",
            with_targets=False),
        "train-bf16": lambda: bf16_train_case(
            s, s.small, s.small_train_batch,
            f"train step bf16 vs fp32, {_size(s.small)} ctx {s.small.context_length} batch {s.small_train_batch}"),
        "train-memory": lambda: memory_case(
            s.repeats, s.memory_steps, f"train step peak memory, gpt-nano ctx 128 batch 8, {s.memory_steps} steps"),
        "train-memory-cli": lambda: cli_memory_case(
            s.repeats, s.memory_steps, "tui-gpt train peak memory, gpt-nano ctx 128 batch 8, the-verdict"),
        "decode-124m": lambda: decode_case(
            s, s.large, f"greedy decode, {_size(s.large)}, {n} tokens", with_targets=targets and n == 200),
        "decode-small": lambda: decode_case(
            s, s.small, f"greedy decode, {_size(s.small)}, {n} tokens", with_targets=False),
        "first-token": lambda: first_token_case(
            s, None, f"time to first token, {_size(s.large)}, prompt {s.prompt!r}"),
        "first-token-long": lambda: first_token_case(
            s, s.long_prompt_tokens,
            f"time to first token, {_size(s.large)}, {s.long_prompt_tokens}-token prompt"),
        "tui-stream": lambda: tui_stream_case(
            s.tui_preset, n, s.prompt, s.decode_repeats, s.warmup,
            f"TUI vs headless stream, {s.tui_preset}, {n} tokens"),
        "tui-first-frame": lambda: first_frame_case(s.repeats, s.warmup, "tui-gpt start to first frame"),
        "score-124m": lambda: scoring_case(
            s.device, s.large, s.score_tokens, s.repeats, s.warmup, s.sync(),
            f"score a {s.score_tokens}-token text, {_size(s.large)}"),
        "tokenize": lambda: tokenize_case(
            s.tokenize_mb, s.repeats, f"tokenize a {s.tokenize_mb:g} MB JSON Lines corpus"),
        "tokenize-memory": lambda: tokenize_memory_case(
            (s.tokenize_mb, s.tokenize_rss_mb), "tui-gpt data prepare peak memory, by corpus size"),
        "input-stall": lambda: input_stall_case(
            s.device, s.stall_preset, s.stall_batch, s.stall_steps, s.stall_tokens,
            f"batch wait in train_run, {s.stall_preset} batch {s.stall_batch}, token files, {s.stall_steps} steps"),
        "book-run": lambda: book_run_case(
            s.device, s.book_epochs, s.book_preset, s.book_context, s.book_chars, s.repeats, s.warmup,
            f"the book's chapter 5 run, {s.book_epochs} epochs, whole process"
            + (f" ({s.book_preset}, ctx {s.book_context or 256})" if s.book_preset or s.book_context else "")),
    }


def run_benchmark(settings: Settings, names: list[str], memory_kept: bool = False,
                  say: Callable[[str], None] = lambda line: None):
    """Run the named cases; returns the report header lines and the results."""
    table = case_table(settings)
    started = dt.datetime.now().astimezone()
    results = []
    with LoadMonitor() as load:
        for name in names:
            say(f"running {name}")
            result = table[name]()
            result.name = name
            results.append(result)
            gc.collect()  # each case's models are freed before the next builds its own
    machine = describe_machine(settings.device)
    precision = "bf16 autocast / bf16 decoding weights" if settings.device.type == "cuda" else "fp32"
    header = [
        f"Measured {started:%Y-%m-%d %H:%M %Z} by `python -m bench{settings.command_line}`.",
        "",
        f"- Machine: {machine.describe()}",
        f"- Device: {settings.device}, dtype: {precision}",
        "- Allocator: " + ("glibc keeps freed memory in the process (engine.fast.allocator, as `tui-gpt train` runs), "
                           "for every contender" if memory_kept else "the C library's defaults, for every contender"),
        f"- Load average (1 min) during the run: {load.describe()}",
        f"- Medians of {settings.repeats} timed runs (decoding: {settings.decode_repeats}) after "
        f"{settings.warmup} warm-up, contenders alternating; each case times the machine's limit "
        "(matrix-multiply rate, memory read bandwidth) alternating with them.",
    ]
    peak = gpu_peak_flops(machine.gpu)
    if peak:
        header.append(f"- GPU bf16 dense peak (data sheet): {peak / 1e12:,.0f} TFLOP/s")
    return header, results


def _size(cfg: GPTConfig) -> str:
    """The preset a config is (whatever its context and dropout), else its dimensions."""
    for name, preset in PRESETS.items():
        if preset.with_overrides(context_length=cfg.context_length, drop_rate=cfg.drop_rate) == cfg:
            return "124M" if name == "gpt2-small" else name
    return f"emb {cfg.emb_dim}, {cfg.n_layers} layers"

