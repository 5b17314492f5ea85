"""The book's chapter 5 loss functions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from engine.training.loss import calc_loss_batch, calc_loss_loader, perplexity
from engine.model.gpt import GPTModel


class FixedLogits(torch.nn.Module):
    """A 'model' over a 3-token vocabulary whose logits depend only on the input token."""

    TABLE = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.TABLE[idx]


def test_batch_loss_is_the_mean_negative_log_likelihood():
    inputs, targets = torch.tensor([[0, 1], [2, 0]]), torch.tensor([[0, 2], [1, 1]])

    def nll(logits: list[float], target: int) -> float:
        return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))

    table = FixedLogits.TABLE.tolist()
    pairs = [(0, 0), (1, 2), (2, 1), (0, 1)]
    expected = sum(nll(table[i], t) for i, t in pairs) / len(pairs)
    loss = calc_loss_batch(inputs, targets, FixedLogits(), "cpu")
    assert loss.shape == ()
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_batch_loss_of_a_gpt_model(tiny_config):
    torch.manual_seed(0)
    model = GPTModel(tiny_config).eval()
    inputs = torch.randint(0, tiny_config.vocab_size, (2, 6))
    targets = torch.randint(0, tiny_config.vocab_size, (2, 6))
    with torch.no_grad():
        log_probs = torch.log_softmax(model(inputs), dim=-1)
        expected = -log_probs.gather(-1, targets.unsqueeze(-1)).mean()
        loss = calc_loss_batch(inputs, targets, model, "cpu")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # an untrained model is close to uniform over GPT-2's vocabulary
    assert abs(loss.item() - math.log(tiny_config.vocab_size)) < 1.0


def _loader(n_batches: int, **kwargs) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 3, (2 * n_batches, 4), generator=generator)
    targets = torch.randint(0, 3, (2 * n_batches, 4), generator=generator)
    return DataLoader(TensorDataset(inputs, targets), batch_size=2, **kwargs)


def test_loader_loss_averages_batch_losses_and_caps_num_batches():
    loader, model = _loader(4), FixedLogits()
    per_batch = [calc_loss_batch(x, y, model, "cpu").item() for x, y in loader]
    assert calc_loss_loader(loader, model, "cpu") == pytest.approx(sum(per_batch) / 4)
    assert calc_loss_loader(loader, model, "cpu", num_batches=2) == pytest.approx(sum(per_batch[:2]) / 2)
    assert calc_loss_loader(loader, model, "cpu", num_batches=100) == pytest.approx(sum(per_batch) / 4)


def test_loader_loss_of_an_empty_loader_is_nan():
    assert math.isnan(calc_loss_loader(_loader(0), FixedLogits(), "cpu"))
    assert math.isnan(calc_loss_loader(_loader(4), FixedLogits(), "cpu", num_batches=0))


def test_loader_loss_draws_the_global_rng_as_the_books_loop_does():
    loader = _loader(4, shuffle=True)
    torch.manual_seed(7)
    calc_loss_loader(loader, FixedLogits(), "cpu", num_batches=2)
    after_loss = torch.get_rng_state()
    torch.manual_seed(7)
    for i, _ in enumerate(loader):  # the book's pattern: start the iterator, stop after two batches
        if i >= 2:
            break
    assert torch.equal(after_loss, torch.get_rng_state())
    torch.manual_seed(7)
    assert not torch.equal(after_loss, torch.get_rng_state())  # shuffling did draw from it


def test_perplexity():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50257)) == pytest.approx(50257)
    assert perplexity(1e6) == math.inf
    assert math.isnan(perplexity(float("nan")))
