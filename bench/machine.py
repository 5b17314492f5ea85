"""The machine a benchmark ran on: what it is, and workloads that measure its limits.

The limits are the matrix-multiply rate (the most FLOP/s that training can
reach) and the memory read bandwidth (the most weight bytes per second that
decoding can stream, each new token reading every weight once). A case times
them alternating with its contenders, so that on a shared machine the
fractions of them compare like with like.
"""

from __future__ import annotations

import os
import platform
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import torch

# Dense bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s.


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int  # logical CPUs this process may run on
    threads: int  # torch intra-op threads
    gpu: str | None
    torch_version: str
    transformers_version: str | None
    python_version: str
    system: str

    def describe(self) -> str:
        gpu = self.gpu or "none"
        hf = self.transformers_version or "not installed"
        return (f"CPU: {self.cpu}, {self.cores} cores, torch threads {self.threads}; GPU: {gpu}; "
                f"torch {self.torch_version}; transformers {hf}; Python {self.python_version}; {self.system}")


def describe_machine(device: torch.device) -> Machine:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return Machine(
        cpu=_cpu_model(),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        threads=torch.get_num_threads(),
        gpu=gpu,
        torch_version=torch.__version__,
        transformers_version=_transformers_version(),
        python_version=platform.python_version(),
        system=f"{platform.system()} {platform.release()}",
    )


def load_average() -> float | None:
    """The one-minute load average, where the system reports one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


class LoadMonitor:
    """Samples the load average in the background while the benchmark runs.

    A load above the number of cores means other processes competed for them.
    """

    def __init__(self, interval: float = 10.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)

    def __enter__(self) -> "LoadMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self, interval: float) -> None:
        while True:
            value = load_average()
            if value is not None:
                self.samples.append(value)
            if self._stop.wait(interval):
                return

    def describe(self) -> str:
        if not self.samples:
            return "unknown"
        mean = sum(self.samples) / len(self.samples)
        return f"mean {mean:.2f}, min {min(self.samples):.2f}, max {max(self.samples):.2f} over {len(self.samples)} samples"


@dataclass(frozen=True)
class Workload:
    """Work of a known size, timed beside the contenders so that it meets the same noise."""

    name: str
    run: Callable[[], object]
    amount: float  # floating-point operations, or bytes read, per run
    unit: str  # what `amount` per second is: "GFLOP/s" or "GB/s"


def matmul_workload(device: torch.device, dtype: torch.dtype, n: int = 2048, count: int = 4) -> Workload:
    """`count` products of square n×n matrices."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run() -> None:
        for _ in range(count):
            torch.mm(a, b, out=out)

    precision = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    return Workload(f"{precision} matmul (limit)", run, 2.0 * n**3 * count, "GFLOP/s")


def memory_read_workload(device: torch.device, mebibytes: int = 512, count: int = 4) -> Workload:
    """`count` sums over a buffer far larger than the CPU's caches."""
    buffer = torch.ones(mebibytes * 2**20 // 4, device=device, dtype=torch.float32)

    def run() -> None:
        for _ in range(count):
            buffer.sum()

    return Workload("memory read (limit)", run, float(buffer.numel() * 4 * count), "GB/s")


def _cpu_model() -> str:
    """The model name, with the vector width, which sets the matrix-multiply rate."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if not key.strip():
            break  # the first processor's block is enough
        fields.setdefault(key.strip().lower(), value.strip())
    name = fields.get("model name", platform.machine())
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    family = f"family {fields['cpu family']} model {fields['model']}" if "cpu family" in fields else None
    return ", ".join(part for part in (name, family, vector) if part)


def _transformers_version() -> str | None:
    try:
        return version("transformers")
    except PackageNotFoundError:
        return None
