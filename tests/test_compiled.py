"""--compile: torch.compile'd training steps compute what the plain model does; no compiler, no crash.

The equality test compiles a tiny model with inductor (C++ on the CPU): it takes
about a minute on 2 cores, most of it compiling, and is skipped only where no C++
compiler exists (the case the fallback test covers).
"""

from __future__ import annotations

import copy

import pytest
import torch

from engine.fast import compiled
from engine.fast.chunked_loss import chunked_loss_batch
from engine.model.gpt import GPTModel
from engine.training.settings import TrainConfig
from tui_gpt.cli.main import build_parser


def test_without_a_cpu_compiler_training_goes_on_uncompiled_after_one_line(tiny_config, monkeypatch):
    monkeypatch.setattr(compiled, "cpu_compiler", lambda: None)
    model, said = GPTModel(tiny_config), []
    assert compiled.compile_for_training(model, torch.device("cpu"), said.append) is model
    assert len(said) == 1 and "C++ compiler" in said[0] and "uncompiled" in said[0]


def test_compile_is_a_training_setting_and_a_train_flag():
    args = build_parser().parse_args(["train", "--compile"])
    assert args.compile is True
    assert not hasattr(build_parser().parse_args(["train"]), "compile")  # absent: the recipe's value
    assert TrainConfig().compile is False
    assert TrainConfig.from_dict(TrainConfig(compile=True).to_dict()).compile is True


@pytest.mark.skipif(compiled.cpu_compiler() is None, reason="no C++ compiler for inductor on this machine")
def test_compiled_training_step_has_the_plain_loss_and_gradients(tiny_config):
    torch.manual_seed(0)
    model = GPTModel(tiny_config)
    twin = copy.deepcopy(model)
    runnable = compiled.compile_for_training(twin, torch.device("cpu"), lambda line: None)
    assert runnable is not twin
    inputs = torch.randint(0, tiny_config.vocab_size, (2, tiny_config.context_length))
    targets = torch.randint(0, tiny_config.vocab_size, (2, tiny_config.context_length))
    plain = chunked_loss_batch(inputs, targets, model, "cpu")
    plain.backward()
    fast = chunked_loss_batch(inputs, targets, runnable, "cpu")
    fast.backward()
    assert fast.item() == pytest.approx(plain.item(), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=name)
