"""The benchmark's cases: training steps, greedy decoding and time to first token.

Each case builds its contenders from one randomly initialised model (speed
does not depend on what the weights have learned), checks that they compute
the same thing, then times them side by side together with a workload that
measures the machine's limit for that kind of work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from engine.model.config import PRESETS, GPTConfig
from engine.training.device import autocast_dtype
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.training.mfu import gpu_peak_flops

from .decoding import decoding_contenders, top1_agreement, weight_bytes_per_token
from .machine import Workload, matmul_workload, memory_read_workload
from .precision import bf16_case
from .report import CaseResult, Check, Row, Target
from .timing import Samples, time_alternating
from .training import training_contenders, training_flops_per_token

SEED = 123


@dataclass(frozen=True)
class Settings:
    device: torch.device = torch.device("cpu")
    repeats: int = 5
    decode_repeats: int = 3
    warmup: int = 1
    large: GPTConfig = PRESETS["gpt2-small"]  # the book's GPT_CONFIG_124M
    small: GPTConfig = PRESETS["gpt-micro"]
    train_context: int = 256  # the book's chapter 5 setting
    train_batch: int = 2
    small_train_batch: int = 8
    decode_tokens: int = 200
    prompt: str = "Hello, I am"
    long_prompt_tokens: int = 512
    peers: tuple[str, ...] = ("textbook", "transformers")
    decode_variants: tuple[str, ...] = ("engine-fp32", "engine-bf16", "engine-int8")
    compile: bool = False  # torch.compile the engine's training model
    memory_steps: int = 4  # training steps per fresh process in the memory cases
    tui_preset: str = "gpt2-small"
    score_tokens: int = 1000  # the text scored by the score-124m case
    tokenize_mb: float = 256  # the generated JSON Lines corpus the tokenize case prepares
    tokenize_rss_mb: float = 2048  # the larger corpus whose preparation's peak RSS is compared with it
    stall_preset: str = "gpt-micro"  # the input-stall case's model, trained on token files
    stall_batch: int = 8
    stall_steps: int = 30
    stall_tokens: int = 2**26  # in its generated train.bin
    book_epochs: int = 2  # of the book's chapter 5 run, in the book-run case
    book_preset: str | None = None  # None: the book's gpt2-small
    book_context: int | None = None  # None: the book's 256
    book_chars: int | None = None  # the first characters of the-verdict.txt; None: all of it
    command_line: str = ""  # the options the run was started with, for the report

    def sync(self) -> Callable[[], None] | None:
        return torch.cuda.synchronize if self.device.type == "cuda" else None

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


def train_case(settings: Settings, cfg: GPTConfig, batch: int, title: str, with_targets: bool) -> CaseResult:
    result = CaseResult(title)
    device = settings.device
    model = _model(cfg, device)
    tokens = _random_tokens(cfg, cfg.context_length + 1, device, batch)
    amp = autocast_dtype(device, "auto" if settings.on_gpu else "fp32")  # the CPU's bf16: its own case
    contenders = training_contenders(model, (tokens[:, :-1], tokens[:, 1:]), device, amp,
                                     ("engine",) + settings.peers, compile_model=settings.compile)
    flops_per_step = training_flops_per_token(model, cfg.context_length) * batch * cfg.context_length
    del model
    losses = {c.name: c.loss() for c in contenders}
    tolerance = 2e-2 if amp is not None else 1e-4
    worst = max(abs(value - losses["engine"]) for value in losses.values())
    listed = ", ".join(f"{name} {value:.5f}" for name, value in losses.items())
    result.checks.append(Check(f"same loss from the same weights (eval mode): {listed}",
                               worst <= tolerance * abs(losses["engine"])))
    limit = matmul_workload(device, torch.bfloat16 if settings.on_gpu else torch.float32,
                            n=8192 if settings.on_gpu else 2048)
    samples = time_alternating({**{c.name: c.step for c in contenders}, limit.name: limit.run},
                               settings.repeats, settings.warmup, settings.sync())
    matmul_rate, limit_row = _limit(limit, samples)
    peak = gpu_peak_flops(torch.cuda.get_device_name(device)) if settings.on_gpu else None
    for contender in contenders:
        sample = samples[contender.name]
        flops = flops_per_step / sample.median
        share = f"{flops / matmul_rate:.0%} of matmul rate ({flops / 1e9:,.1f} GFLOP/s)"
        if peak:
            share += f"; MFU {flops / peak:.1%}"
        note = _train_note(contender.name, amp, settings.compile)
        result.rows.append(Row(contender.name, sample.median, "step", batch * cfg.context_length / sample.median,
                               "tok/s", share, sample.spread, note))
    result.rows.append(limit_row)
    if with_targets:
        engine_flops = flops_per_step / samples["engine"].median
        if settings.on_gpu:
            if peak:
                result.targets.append(Target("engine MFU against the GPU's bf16 peak", engine_flops / peak, 0.45))
        else:
            _peer_targets(result, "engine", "step throughput", {"textbook": 1.3, "transformers": 1.0})
            result.targets.append(Target("engine FLOP/s ÷ matmul rate", engine_flops / matmul_rate, 0.75))
    return result


def bf16_train_case(settings: Settings, cfg: GPTConfig, batch: int, title: str) -> CaseResult:
    """The CPU's bf16 autocast step against fp32's (bench.precision); on a GPU the train cases run bf16."""
    if settings.on_gpu:
        result = CaseResult(title)
        result.skipped = "a CPU case: on a GPU the training cases already run under bf16 autocast"
        return result
    tokens = _random_tokens(cfg, cfg.context_length + 1, settings.device, batch)
    return bf16_case(_model(cfg, settings.device), (tokens[:, :-1], tokens[:, 1:]), settings.repeats,
                     settings.warmup, title)


def decode_case(settings: Settings, cfg: GPTConfig, title: str, with_targets: bool) -> CaseResult:
    result = CaseResult(title)
    device = settings.device
    model = _model(cfg, device).eval()  # also the plain "engine" contender's model
    prompt = torch.tensor([get_tokenizer().encode(settings.prompt)], device=device)
    n = settings.decode_tokens
    contenders = decoding_contenders(model, ("engine",) + settings.decode_variants + settings.peers)
    probe = _random_tokens(cfg, min(cfg.context_length, 256), device)
    outputs: dict[str, torch.Tensor] = {}
    runs = {c.name: (lambda c=c: outputs.__setitem__(c.name, c.generate(prompt, n))) for c in contenders}
    limit = memory_read_workload(device, mebibytes=4096 if settings.on_gpu else 512)
    samples = time_alternating({**runs, limit.name: limit.run}, settings.decode_repeats, settings.warmup,
                               settings.sync())
    bandwidth, limit_row = _limit(limit, samples)
    reference = outputs["engine"]
    for contender in contenders:
        name = contender.name
        same = outputs[name].tolist() == reference.tolist()
        if contender.exact and name != "engine":
            result.checks.append(Check(f"{name}: the same {n} tokens as the engine", same))
        elif not contender.exact:
            agreement = top1_agreement(contender.model, model, probe)
            differs = _first_difference(outputs[name], reference) - prompt.shape[1] + 1
            free_running = "identical" if same else f"first differs at new token {differs}"
            result.checks.append(Check(
                f"{name}: the same most likely next token as fp32 at {agreement:.1%} of {probe.shape[1]} positions "
                f"of a random sequence (goal ≥ 90%); its {n} greedy tokens: {free_running}", agreement >= 0.9))
        sample = samples[name]
        rate = n / sample.median
        # The peers hold the same fp32 weights as the engine's model.
        read = weight_bytes_per_token(contender.model if name.startswith("engine") else model)
        share = f"{rate * read / bandwidth:.0%} of memory bandwidth ({read / 1e6:,.0f} MB/token)"
        result.rows.append(Row(name, sample.median, f"{n} tokens", rate, "tok/s", share, sample.spread,
                               contender.note))
    result.rows.append(limit_row)
    if with_targets:
        if settings.on_gpu:
            row = result.row("engine-bf16")
            if row is not None:
                result.targets.append(Target("engine bf16 greedy tokens/s at batch 1", row.rate, 2000))
        else:
            for contender in ("engine", "engine-fp32"):
                _peer_targets(result, contender, "tokens/s", {"textbook": 8.0, "transformers": 1.0})
    return result


def first_token_case(settings: Settings, prompt_tokens: int | None, title: str) -> CaseResult:
    """From prompt ids to the first new token, as `stream` delivers it."""
    result = CaseResult(title)
    device = settings.device
    model = _model(settings.large, device)
    if prompt_tokens is None:
        prompt = torch.tensor([get_tokenizer().encode(settings.prompt)], device=device)
    else:
        prompt = _random_tokens(model.cfg, prompt_tokens, device)
    contenders = decoding_contenders(model, ("engine",) + settings.decode_variants + settings.peers)
    del model
    first: dict[str, int] = {}
    runs = {c.name: (lambda c=c: first.__setitem__(c.name, c.first_token(prompt))) for c in contenders}
    samples = time_alternating(runs, settings.repeats, settings.warmup, settings.sync())
    exact = [c.name for c in contenders if c.exact]
    result.checks.append(Check(f"the same first token from {', '.join(exact)}",
                               len({first[name] for name in exact}) == 1))
    for name, sample in samples.items():
        result.rows.append(Row(name, sample.median, "first token", spread=sample.spread))
    return result


def _limit(limit: Workload, samples: dict[str, Samples]) -> tuple[float, Row]:
    """The limit's rate in units per second, and its row for the table."""
    sample = samples[limit.name]
    rate = limit.amount / sample.median
    return rate, Row(limit.name, sample.median, "run", rate / 1e9, limit.unit, "the machine's limit", sample.spread)


def _peer_targets(result: CaseResult, contender: str, what: str, goals: dict[str, float]) -> None:
    for peer, goal in goals.items():
        ratio = result.ratio(contender, peer)
        if ratio is not None:
            result.targets.append(Target(f"{contender} {what} ÷ {peer}", ratio, goal))


def _model(cfg: GPTConfig, device: torch.device) -> GPTModel:
    torch.manual_seed(SEED)
    return GPTModel(cfg).to(device)


def _random_tokens(cfg: GPTConfig, length: int, device: torch.device, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(SEED)
    return torch.randint(0, cfg.vocab_size, (batch, length), generator=generator).to(device)


def _train_note(name: str, amp: torch.dtype | None, compiled: bool) -> str:
    if name == "textbook":
        return "fp32, torch's default AdamW, as the book"
    note = ("bf16 autocast" if amp is not None else "fp32") + ", fused AdamW"
    return note + (", torch.compile" if compiled and name == "engine" else "")


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    for i, (x, y) in enumerate(zip(a[0].tolist(), b[0].tolist())):
        if x != y:
            return i
    return min(a.shape[1], b.shape[1])
