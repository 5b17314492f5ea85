"""The chunked cross-entropy (engine.fast.chunked_loss) computes what the book's calc_loss_batch does."""

from __future__ import annotations

import copy

import pytest
import torch

from engine.fast.chunked_loss import chunked_loss_batch, head_cross_entropy
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.training.loss import calc_loss_batch


def _model_and_batch(config: GPTConfig, tie: bool = False):
    torch.manual_seed(0)
    model = GPTModel(config.with_overrides(tie_embeddings=tie))
    inputs = torch.randint(0, config.vocab_size, (3, config.context_length))
    targets = torch.randint(0, config.vocab_size, (3, config.context_length))
    return model, inputs, targets


def _loss_and_grads(loss_fn, model, inputs, targets, scale=1.0):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(inputs, targets, model, "cpu")
    (loss * scale).backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("tie", [False, True], ids=["separate-head", "tied-head"])
def test_chunked_loss_has_the_book_loss_and_gradients(tiny_config, tie):
    model, inputs, targets = _model_and_batch(tiny_config, tie)
    twin = copy.deepcopy(model)
    plain_loss, plain_grads = _loss_and_grads(calc_loss_batch, model, inputs, targets)
    chunked_loss, chunked_grads = _loss_and_grads(chunked_loss_batch, twin, inputs, targets)
    assert chunked_loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain_grads.keys() == chunked_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_loss_scales_its_gradient_by_the_incoming_one(tiny_config):
    """Gradient accumulation divides the loss by the number of micro-batches."""
    model, inputs, targets = _model_and_batch(tiny_config)
    twin = copy.deepcopy(model)
    _, plain_grads = _loss_and_grads(calc_loss_batch, model, inputs, targets, scale=0.25)
    _, chunked_grads = _loss_and_grads(chunked_loss_batch, twin, inputs, targets, scale=0.25)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_slices_of_any_size_give_the_same_loss_and_gradients():
    torch.manual_seed(1)
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(50, 8, requires_grad=True)
    targets = torch.randint(0, 50, (10,))
    targets[3] = -100  # ignored, as F.cross_entropy ignores it
    expected = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    expected.backward()
    want = hidden.grad.clone(), weight.grad.clone()
    for rows in (1, 3, 10, 64):
        hidden.grad = weight.grad = None
        loss = head_cross_entropy(hidden, weight, targets, rows=rows)
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        torch.testing.assert_close(hidden.grad, want[0])
        torch.testing.assert_close(weight.grad, want[1])


def test_chunked_loss_without_gradients_is_the_book_loss(tiny_config):
    model, inputs, targets = _model_and_batch(tiny_config)
    model.eval()
    with torch.no_grad():
        plain = calc_loss_batch(inputs, targets, model, "cpu")
        chunked = chunked_loss_batch(inputs, targets, model, "cpu")
    assert not chunked.requires_grad
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-6)


def test_chunked_loss_under_bf16_autocast_is_close_to_the_book_loss_under_it(tiny_config):
    model, inputs, targets = _model_and_batch(tiny_config)
    twin = copy.deepcopy(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain_loss, plain_grads = _loss_and_grads(calc_loss_batch, model, inputs, targets)
        chunked_loss, chunked_grads = _loss_and_grads(chunked_loss_batch, twin, inputs, targets)
    assert chunked_loss == pytest.approx(plain_loss, rel=1e-2)
    for name, grad in plain_grads.items():
        assert chunked_grads[name].dtype == torch.float32
        torch.testing.assert_close(chunked_grads[name], grad, rtol=5e-2, atol=5e-3, msg=name)
