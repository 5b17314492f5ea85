"""The CPU's bf16: a training step under bf16 autocast against the same step in fp32.

Both contenders run the step as the trainer does (`engine.fast.chunked_loss`,
fused AdamW, fp32 master weights) from the same weights on the same batch,
alternating in one process. The case also times square matrix products in
fp32 and in bf16, which bound what autocast can gain on this machine.
"""

from __future__ import annotations

import copy

import torch

from engine.fast.chunked_loss import chunked_loss_batch
from engine.model.gpt import GPTModel
from engine.training.device import autocast, cpu_has_native_bf16
from engine.training.mfu import training_flops_per_token

from .machine import matmul_workload
from .report import CaseResult, Check, Row, Target
from .timing import time_alternating

SPEED_GOAL = 1.6  # bf16 step throughput ÷ fp32's


def bf16_case(model: GPTModel, batch: tuple[torch.Tensor, torch.Tensor], repeats: int, warmup: int,
              title: str) -> CaseResult:
    result = CaseResult(title)
    if not cpu_has_native_bf16():
        result.skipped = "this CPU has no native bf16 instructions (avx512_bf16, amx_bf16 or Arm's bf16)"
        return result
    inputs, targets = batch
    device = torch.device("cpu")
    steps, losses = {}, {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        ours = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(ours.parameters(), lr=4e-4, weight_decay=0.1, fused=True)

        def step(ours=ours, optimizer=optimizer, dtype=dtype) -> float:
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = chunked_loss_batch(inputs, targets, ours, device)
            loss.backward()
            optimizer.step()
            return loss.item()

        ours.eval()
        with torch.no_grad(), autocast(device, dtype):
            losses[name] = chunked_loss_batch(inputs, targets, ours, device).item()
        ours.train()
        steps[f"engine {name}"] = step
    result.checks.append(Check(
        f"bf16 loss within 1% of fp32's from the same weights: {losses['bf16']:.4f} vs {losses['fp32']:.4f}",
        abs(losses["bf16"] - losses["fp32"]) <= 0.01 * abs(losses["fp32"])))
    limits = [matmul_workload(device, torch.float32), matmul_workload(device, torch.bfloat16)]
    samples = time_alternating({**steps, **{w.name: w.run for w in limits}}, repeats, warmup)
    tokens = inputs.numel()
    flops = training_flops_per_token(model, inputs.shape[1]) * tokens
    for name in steps:
        s = samples[name]
        result.rows.append(Row(name, s.median, "step", tokens / s.median, "tok/s",
                               f"{flops / s.median / 1e9:,.1f} GFLOP/s", s.spread,
                               "chunked loss, fused AdamW" + (", bf16 autocast" if "bf16" in name else "")))
    for w in limits:
        s = samples[w.name]
        result.rows.append(Row(w.name, s.median, "run", w.amount / s.median / 1e9, w.unit, "the machine's limit",
                               s.spread))
    result.targets.append(Target("bf16 step throughput ÷ fp32", result.ratio("engine bf16", "engine fp32"),
                                 SPEED_GOAL))
    return result
