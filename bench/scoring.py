"""Scoring a text (engine.insight.scoring): windows and tokens per second.

The model's full context scores a 1,000-token text in one window; a copy cut to
a shorter context reads it in sliding windows, one forward pass each, or several
windows batched into one pass.
"""

from __future__ import annotations

import torch

from engine.insight.scoring import score_ids
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel

from .report import CaseResult, Check, Row
from .timing import time_alternating

SEED = 123
SHORT_CONTEXT = 256  # the sliding-window contenders' context (their stride is half of it)
BATCHED_WINDOWS = 8


def scoring_case(device: torch.device, cfg: GPTConfig, n_tokens: int, repeats: int, warmup: int,
                 sync, title: str) -> CaseResult:
    result = CaseResult(title)
    torch.manual_seed(SEED)
    model = GPTModel(cfg).to(device).eval()
    short_context = min(SHORT_CONTEXT, cfg.context_length)
    short = GPTModel(cfg.with_overrides(context_length=short_context)).to(device).eval()
    state = {k: v[:short_context] if k == "pos_emb.weight" else v for k, v in model.state_dict().items()}
    short.load_state_dict(state)
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, cfg.vocab_size, (n_tokens,), generator=generator).tolist()
    contenders = {
        f"ctx {cfg.context_length}": lambda: score_ids(model, ids, top_k=5),
        f"ctx {short_context}, 1 window/pass": lambda: score_ids(short, ids, top_k=5),
        f"ctx {short_context}, {BATCHED_WINDOWS} windows/pass": lambda: score_ids(short, ids, top_k=5,
                                                                                  batch_windows=BATCHED_WINDOWS),
    }
    scores = {name: run() for name, run in contenders.items()}
    one, batched = list(scores.values())[1:]
    result.checks.append(Check(
        f"batched windows score as one at a time (mean loss {one.mean_loss:.5f} vs {batched.mean_loss:.5f})",
        abs(one.mean_loss - batched.mean_loss) <= 1e-4 * abs(one.mean_loss)))
    samples = time_alternating(contenders, repeats, warmup, sync)
    for name, sample in samples.items():
        windows = len(scores[name].windows)
        result.rows.append(Row(name, sample.median, f"{n_tokens} tokens", (n_tokens - 1) / sample.median, "tok/s",
                               spread=sample.spread, note=f"{windows} windows, {windows / sample.median:.3g} windows/s"))
    return result
