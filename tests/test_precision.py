"""bf16 autocast on the CPU: when `auto` picks it, and that it trains as fp32 does, within tolerance."""

from __future__ import annotations

import copy

import pytest
import torch

from engine.fast.chunked_loss import chunked_loss_batch
from engine.model.gpt import GPTModel
from engine.training.device import autocast, autocast_dtype, cpu_has_native_bf16
from engine.training.settings import get_recipe

EPYC_FLAGS = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n"
OLD_XEON_FLAGS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
ARM_FEATURES = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_has_native_bf16(EPYC_FLAGS)
    assert cpu_has_native_bf16(ARM_FEATURES)
    assert not cpu_has_native_bf16(OLD_XEON_FLAGS)
    assert not cpu_has_native_bf16("")


def test_auto_picks_bf16_on_a_cpu_only_where_it_is_native(monkeypatch):
    import engine.training.device as device_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype(cpu, "auto") is torch.bfloat16
    assert autocast_dtype(cpu, "fp32") is None
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16  # asked for: emulated, but it runs


def test_the_book_recipe_trains_in_fp32_on_every_machine():
    assert get_recipe("book").precision == "fp32"


def test_bf16_training_follows_fp32_on_a_tiny_model(tiny_config):
    torch.manual_seed(0)
    model = GPTModel(tiny_config)
    batches = [torch.randint(0, 64, (4, tiny_config.context_length + 1)) for _ in range(4)]
    losses = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        trained = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(trained.parameters(), lr=5e-3, fused=True)
        losses[name] = []
        for _ in range(5):
            for batch in batches:
                with autocast(torch.device("cpu"), dtype):
                    loss = chunked_loss_batch(batch[:, :-1], batch[:, 1:], trained, "cpu")
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses[name].append(loss.item())
        # fp32 master weights: the parameters stay fp32 under autocast.
        assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert losses["fp32"][-1] < losses["fp32"][0] - 1.0  # it learned something worth comparing
    for fp32, bf16 in zip(losses["fp32"], losses["bf16"]):
        assert bf16 == pytest.approx(fp32, abs=0.05)


def test_on_a_gpu_bf16_follows_what_the_gpu_supports(monkeypatch):
    """The CUDA branch, run on any machine: the GPU's answer is stood in for."""
    from engine.errors import ConfigError

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype(cuda, "auto") is torch.bfloat16
    assert autocast_dtype(cuda, "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype(cuda, "auto") is None
    with pytest.raises(ConfigError, match="does not support bf16"):
        autocast_dtype(cuda, "bf16")
