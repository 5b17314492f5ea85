"""The book's cross-entropy over the output head, a slice of rows at a time.

`calc_loss_batch` (engine.training.loss) computes every position's logits, all
50,257 of them in fp32, then their log-softmax, and in the backward pass their
gradient: three tensors of batch × context × vocabulary floats (206 MB each for
batch 8 at context 128) alive at once, the largest allocations of a small
model's step. Here the output head and the cross-entropy run together on
`rows` positions at a time. While a slice's logits exist, their gradient
(softmax minus the one-hot target, over the number of targets) is formed in
their place and multiplied back at once into the gradients of the hidden
states and of the head's weight, as fused linear-cross-entropy kernels do; the
backward pass then only scales those by the incoming gradient. No matrix
product is repeated, and at most one slice of logits exists at a time.

The value is the book's (the mean over every target, ignore_index -100 as in
`F.cross_entropy`), up to the order of float sums; `tests/test_chunked_loss.py`
checks values and gradients against `calc_loss_batch`. Under autocast the
products run in the autocast dtype, as `nn.Linear` would, and the softmax in
fp32, as `F.cross_entropy` does.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

IGNORE_INDEX = -100  # F.cross_entropy's default
SLICE_ELEMENTS = 1 << 23  # logits per slice: 32 MiB in fp32


def chunked_loss_batch(input_batch: torch.Tensor, target_batch: torch.Tensor, model: torch.nn.Module,
                       device) -> torch.Tensor:
    """`calc_loss_batch`'s value, computed without every logit at once (a GPTModel, maybe wrapped)."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    hidden = model(input_batch, hidden_only=True)
    return head_cross_entropy(hidden.flatten(0, 1), output_head(model).weight, target_batch.flatten())


def output_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The GPTModel's `out_head` inside a DistributedDataParallel or torch.compile wrapper."""
    while not hasattr(model, "out_head"):
        model = getattr(model, "module", None) or model._orig_mod
    return model.out_head


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                       rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, `rows` positions at a time."""
    rows = rows or max(1, SLICE_ELEMENTS // weight.shape[0])
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _HeadCrossEntropy.apply(hidden, weight, targets, rows)
    return _loss_and_grads(hidden, weight, targets, rows, want_grads=False)[0]


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, rows):
        loss, grad_hidden, grad_weight = _loss_and_grads(hidden, weight, targets, rows, want_grads=True)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        # In place: the saved gradients are this Function's own (e.g. grad_loss = 1 / grad_accum_steps).
        return grad_hidden.mul_(grad_loss), grad_weight.mul_(grad_loss), None, None


def _loss_and_grads(hidden, weight, targets, rows, want_grads):
    kept = targets != IGNORE_INDEX
    count = kept.sum()
    # The products in the autocast dtype, as nn.Linear under autocast; cast once here rather
    # than by autocast at every slice (its cast cache is off while a Function runs).
    dtype = _autocast_dtype(hidden.device.type) or hidden.dtype
    h_all, w = hidden.to(dtype), weight.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden) if want_grads else None
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_grads else None
    with torch.autocast(hidden.device.type, enabled=False):
        for start in range(0, hidden.shape[0], rows):
            h, t, k = h_all[start : start + rows], targets[start : start + rows], kept[start : start + rows]
            logits = (h @ w.t()).float()
            safe_t = t.masked_fill(~k, 0).unsqueeze(1)
            target_logit = logits.gather(1, safe_t).squeeze(1)
            # A softmax in the logits' own memory: one pass for the exponentials, shared by
            # the loss (through their sum) and the gradient.
            peak = logits.amax(dim=1, keepdim=True)
            probs = logits.sub_(peak).exp_()
            norm = probs.sum(dim=1, keepdim=True)
            nll = (peak + norm.log()).squeeze(1) - target_logit
            total += nll.masked_fill(~k, 0).sum()
            if want_grads:
                # d loss / d logits = (softmax - one_hot) / count, over the kept targets.
                weight_per_row = (k / count).unsqueeze(1)
                grad_logits = probs.mul_(weight_per_row / norm)
                grad_logits.scatter_add_(1, safe_t, -weight_per_row.to(grad_logits.dtype))
                grad_logits = grad_logits.to(dtype)
                grad_hidden[start : start + rows] = grad_logits @ w
                if dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.t(), h)  # in place: no weight-sized temporary
                else:
                    grad_weight += grad_logits.t() @ h
                del grad_logits
            del logits, probs
    loss = total / count
    if want_grads:
        grad_weight = grad_weight.to(weight.dtype)
    return loss, grad_hidden, grad_weight


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
