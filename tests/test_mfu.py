"""MFU arithmetic (engine.training.mfu), the peaks it divides by, and where it shows."""

from __future__ import annotations

import io
import json

import pytest
import torch

from engine.model.config import PRESETS
from engine.model.gpt import meta_model
from engine.runs.events import StepDone, event_from_dict
from engine.training import mfu as mfu_module
from engine.training.mfu import cpu_matmul_rate, gpu_peak_flops, mfu, training_flops_per_token
from tui_gpt.cli.progress import TrainingProgress


def test_flops_per_token_are_six_per_product_weight_plus_attention():
    model = meta_model(PRESETS["gpt2-small"].with_overrides(context_length=1024))
    d, layers, vocab = 768, 12, 50257
    per_block = 3 * d * d + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    weights = layers * per_block + 2 * d + vocab * d  # the untied head counts, the two tables do not
    assert training_flops_per_token(model, 1024) == 6 * weights + 12 * layers * 12 * 64 * 1024


def test_tied_head_counts_once():
    tied = meta_model(PRESETS["gpt2-small"].with_overrides(tie_embeddings=True))
    untied = meta_model(PRESETS["gpt2-small"])
    assert training_flops_per_token(untied, 256) - training_flops_per_token(tied, 256) == 0
    # Tied: the head's weight is the token table, which then counts as a product weight.
    assert tied.num_parameters() == untied.num_parameters() - 50257 * 768


def test_mfu_is_achieved_flops_over_the_peaks_of_all_devices():
    # 10,000 tokens/s at 6e8 FLOPs a token is 6e12 FLOP/s: 2% of a 300 TFLOP/s GPU, 1% of two.
    assert mfu(10_000, 6e8, 300e12) == pytest.approx(0.02)
    assert mfu(10_000, 6e8, 300e12, devices=2) == pytest.approx(0.01)
    assert mfu(10_000, 6e8, None) is None
    assert mfu(0.0, 6e8, 300e12) is None


def test_gpu_peaks_by_name_and_precision():
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_peak_flops("NVIDIA H200", dtype=None) == 67e12
    assert gpu_peak_flops("NVIDIA L4") == 121e12 and gpu_peak_flops("NVIDIA L40S") == 362e12
    assert gpu_peak_flops("NVIDIA GeForce RTX 4090") == 165.2e12
    assert gpu_peak_flops("Tesla V100-SXM2-16GB") is None  # no bf16
    assert gpu_peak_flops("Some Future GPU") is None and gpu_peak_flops(None) is None


def test_cpu_matmul_rate_is_measured_once_and_cached(tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(mfu_module, "_time_matmuls", lambda dtype: measured.append(dtype) or 1.5e11)
    assert cpu_matmul_rate(torch.float32, tmp_path) == 1.5e11
    assert cpu_matmul_rate(torch.float32, tmp_path) == 1.5e11
    assert measured == [torch.float32]
    cpu_matmul_rate(torch.bfloat16, tmp_path)  # another precision is another rate
    assert measured == [torch.float32, torch.bfloat16]
    assert len(json.loads((tmp_path / "cpu-matmul-rate.json").read_text())) == 2


def test_cpu_matmul_rate_is_a_real_measurement():
    assert cpu_matmul_rate(torch.float32) > 1e8  # any CPU multiplies faster than 0.1 GFLOP/s


def test_step_events_carry_mfu_and_older_lines_read_without_it():
    event = StepDone(step=0, epoch=0, tokens_seen=8, loss=1.0, lr=1e-3, tokens_per_sec=8.0, step_time=1.0, mfu=0.42)
    assert event_from_dict(json.loads(json.dumps(event.to_dict()))).mfu == 0.42
    old = {k: v for k, v in event.to_dict().items() if k != "mfu"}
    assert event_from_dict(old).mfu is None


def test_progress_line_shows_mfu():
    out = io.StringIO()
    progress = TrainingProgress(out, live=False, log_every=1)
    progress.on_event(StepDone(step=0, epoch=0, tokens_seen=8, loss=1.0, lr=1e-3, tokens_per_sec=8.0,
                               step_time=1.0, mfu=0.421))
    assert "MFU 42%" in out.getvalue()


def test_on_a_gpu_the_peak_is_the_data_sheet_one_for_the_precision(monkeypatch):
    """The CUDA branch, run on any machine: the GPU's name is stood in for."""
    from engine.training.mfu import peak_flops

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_flops(torch.device("cuda"), torch.bfloat16) == 989e12
    assert peak_flops(torch.device("cuda"), None) == 67e12


def test_measuring_the_cpu_matmul_rate_draws_nothing_from_torchs_global_generator(tmp_path):
    import torch

    from engine.training.mfu import peak_flops

    torch.manual_seed(123)
    before = torch.get_rng_state()
    peak_flops(torch.device("cpu"), None, tmp_path)
    assert torch.equal(torch.get_rng_state(), before)  # a seeded run draws exactly what it would without MFU
