"""Model FLOPs utilisation: the FLOP/s a training run's tokens imply, over what the hardware can do.

The count is the PaLM paper's (appendix B), as nanoGPT's `estimate_mfu` uses it:
per token, 6 FLOPs for every weight that enters a matrix product (2 forward,
4 backward) plus 12 · layers · heads · head size · sequence length for the
attention scores and their weighted sums. The looked-up embedding tables do no
products; an output head untied from them does.

The peak: on a GPU, the data sheet's dense figure for the precision in use
(below); on a CPU, which has no data sheet figure worth trusting (clocks, cores
and BLAS vary), a square matrix product timed once on this machine and cached
in the data dir.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

# Dense (no sparsity) peak FLOP/s per GPU: (bf16 tensor cores, plain fp32), from NVIDIA's data
# sheets; the first name contained in torch.cuda.get_device_name() wins, so longer names come first.
GPU_PEAKS: dict[str, tuple[float | None, float]] = {
    "H100 PCIe": (756e12, 51.2e12),  # NVIDIA H100 Tensor Core GPU datasheet (PCIe column)
    "H100": (989e12, 67e12),  # H100 datasheet, SXM column (1,979 bf16 TFLOPS is with sparsity)
    "H200": (989e12, 67e12),  # NVIDIA H200 Tensor Core GPU datasheet, SXM column
    "A100": (312e12, 19.5e12),  # NVIDIA A100 Tensor Core GPU datasheet
    "L40S": (362e12, 91.6e12),  # NVIDIA L40S datasheet (733 bf16 TFLOPS with sparsity)
    "L4": (121e12, 30.3e12),  # NVIDIA L4 Tensor Core GPU datasheet (242 with sparsity)
    "A10G": (70e12, 31.2e12),  # AWS G5 (A10G) documentation
    "A10": (125e12, 31.2e12),  # NVIDIA A10 datasheet
    "RTX 4090": (165.2e12, 82.6e12),  # NVIDIA Ada Lovelace whitepaper, appendix (fp32 accumulate)
    "RTX 3090": (71e12, 35.6e12),  # NVIDIA Ampere GA102 whitepaper, appendix (fp32 accumulate)
    "V100": (None, 15.7e12),  # NVIDIA V100 datasheet (SXM2); no bf16
    "T4": (None, 8.1e12),  # NVIDIA T4 datasheet; no bf16
}

_CPU_RATE_FILE = "cpu-matmul-rate.json"
_CPU_MATRIX = 1024  # big enough for the BLAS's best kernels, small enough to time in about a second


def weights_in_products(model) -> int:
    """Weights that enter matrix products: all but the looked-up embeddings (a GPTModel)."""
    looked_up = model.pos_emb.weight.numel()
    if model.out_head.weight is not model.tok_emb.weight:
        looked_up += model.tok_emb.weight.numel()
    return model.num_parameters() - looked_up


def training_flops_per_token(model, seq_len: int) -> float:
    """6 per weight in a product, plus attention over `seq_len` positions (PaLM, nanoGPT)."""
    cfg = model.cfg
    return 6 * weights_in_products(model) + 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len


def gpu_peak_flops(gpu_name: str | None, dtype: torch.dtype | None = torch.bfloat16) -> float | None:
    """The data sheet's dense peak for this GPU in bf16 (dtype bf16) or fp32 (None); None if unlisted."""
    for model, (bf16, fp32) in GPU_PEAKS.items():
        if gpu_name and model in gpu_name:
            return bf16 if dtype == torch.bfloat16 else fp32
    return None


def mfu(tokens_per_sec: float, flops_per_token: float, peak_flops: float | None, devices: int = 1) -> float | None:
    """The share of `devices` peaks that `tokens_per_sec` uses; None without a peak."""
    if not peak_flops or tokens_per_sec <= 0:
        return None
    return tokens_per_sec * flops_per_token / (peak_flops * devices)


def peak_flops(device: torch.device, dtype: torch.dtype | None, cache_dir: Path | None = None) -> float | None:
    """The peak to measure MFU against on `device` in `dtype` (None: fp32)."""
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device), dtype)
    if device.type == "cpu":
        return cpu_matmul_rate(dtype or torch.float32, cache_dir)
    return None


def cpu_matmul_rate(dtype: torch.dtype, cache_dir: Path | None = None) -> float:
    """FLOP/s of square matrix products on this CPU with torch's threads, measured once per machine.

    Cached by CPU, thread count, dtype and torch version. A measurement taken while other
    work loads the machine is low, and the MFU against it high: delete the file to measure anew.
    """
    key = f"{_cpu_name()}|threads={torch.get_num_threads()}|{dtype}|torch={torch.__version__}"
    path = cache_dir / _CPU_RATE_FILE if cache_dir else None
    cached = _read_json(path) if path else {}
    if key in cached:
        return float(cached[key])
    rate = _time_matmuls(dtype)
    if path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**cached, key: rate}, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only data dir: measure again next time
    return rate


def _time_matmuls(dtype: torch.dtype, seconds: float = 0.5) -> float:
    n = _CPU_MATRIX
    # A generator of its own: drawing from torch's global one here, between the model's initial
    # weights and the first batch, would change a seeded run (the book's numbers above all).
    own = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=own).to(dtype) for _ in range(2))
    a @ b  # warm-up: the BLAS's thread pool and packing buffers
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == 0.0:
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        best = max(best, 2 * n**3 / elapsed)  # the least disturbed run is the machine's rate
    return best


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
