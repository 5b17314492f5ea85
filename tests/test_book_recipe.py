"""The book's chapter 5 run, reproduced number for number by the `book` recipe."""

from __future__ import annotations

import pytest
import torch

from engine import GPTModel, calc_loss_loader, create_dataloader_v1
from engine.runs.events import EvalDone, MetricsReader
from engine.training.settings import get_recipe
from engine.training.trainer import train_run


def test_initial_losses_match_the_book(verdict_text):
    recipe = get_recipe("book")
    split = int(0.9 * len(verdict_text))
    torch.manual_seed(123)
    model = GPTModel(_book_config(recipe))
    model.eval()
    train_loader = create_dataloader_v1(verdict_text[:split], batch_size=2, max_length=256, stride=256,
                                        drop_last=True, shuffle=True, num_workers=0)
    val_loader = create_dataloader_v1(verdict_text[split:], batch_size=2, max_length=256, stride=256,
                                      drop_last=False, shuffle=False, num_workers=0)
    with torch.no_grad():
        assert calc_loss_loader(train_loader, model, "cpu") == pytest.approx(10.98758, abs=1e-3)
        assert calc_loss_loader(val_loader, model, "cpu") == pytest.approx(10.98110, abs=1e-3)


def _book_config(recipe):
    from engine.model.config import get_preset

    return get_preset(recipe.preset).with_overrides(**recipe.model_overrides)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # about six minutes on 2 idle cores; much longer on a loaded machine
def test_book_recipe_reproduces_chapter_5(verdict_path, data_dir):
    recipe = get_recipe("book").with_overrides(corpus=str(verdict_path), device="cpu")
    outcome = train_run(recipe, run_name="book", data_dir=data_dir)
    assert outcome.state == "finished"
    events = MetricsReader(data_dir / "runs" / "book" / "metrics.jsonl").read_new()
    evals = [e for e in events if isinstance(e, EvalDone)]
    assert [e.step for e in evals] == list(range(0, 90, 5))  # 9 steps an epoch, 10 epochs
    assert evals[0].train_loss == pytest.approx(9.781, abs=5e-3)
    assert evals[0].val_loss == pytest.approx(9.933, abs=5e-3)
    assert evals[-1].step == 85
    assert evals[-1].train_loss < 1.0 and evals[-1].val_loss < 7.0
