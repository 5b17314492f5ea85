"""Running one training loop on several processes under `torchrun`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE > 1 the run
joins a process group (NCCL on GPUs, gloo on CPUs). Rank 0 alone writes the
run folder; the others train on their own shard of the data and follow.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from engine.errors import RunError
from engine.training.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (so all ranks stop together)."""
        if not self.enabled:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def mean(self, number: float) -> float:
        if not self.enabled:
            return number
        value = torch.tensor([number], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return float(value.item()) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def run_on_main(self, action: Callable[[], None]) -> None:
        """Run `action` on rank 0 alone, and fail on every rank if it fails there.

        The other ranks wait for rank 0's outcome rather than at a barrier, so a
        failure there (a full disk while saving) ends them all at once with its
        one-line message, instead of leaving them blocked until the collective
        times out. Rank 0 raises its own error; the others a RunError with its message.
        """
        if not self.enabled:
            action()
            return
        error: Exception | None = None
        if self.is_main:
            try:
                action()
            except Exception as exc:  # every kind: the other ranks must not wait for an outcome that never comes
                error = exc
        message = self.broadcast_text("" if error is None else _one_line(error))
        if error is not None:
            raise error
        if message:
            raise RunError(message)

    def gather_tensor(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of a same-shaped tensor (used for per-rank RNG states)."""
        if not self.enabled:
            return [tensor]
        local = tensor.to(_comm_device())
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return [p.cpu() for p in parts]

    def broadcast_text(self, text: str) -> str:
        """Rank 0's string on every rank (e.g. the run name it chose)."""
        if not self.enabled:
            return text
        box = [text]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def setup(device_name: str) -> tuple[Distributed, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank), device


def teardown(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        # Leave together: a rank that destroys its gloo group while another still talks to it
        # can make that other rank's gloo threads abort the process at exit.
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()
