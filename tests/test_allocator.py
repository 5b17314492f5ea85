"""engine.fast.allocator: memory a step frees stays in the process for the next step.

Whether the next step's blocks then land on those kept pages (and so fault none in) depends
on where other allocations fall between steps; that gain is measured in the benchmark
(BENCHMARKS.md), not here. What the setting itself promises is checked: glibc no longer
hands a large freed block back to the kernel.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates and fills a 64 MiB tensor, frees it, and prints how much resident memory freeing
# gave back to the kernel.
PROGRAM = """
import sys, torch
from engine.fast.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096
torch.ones(1).sum()  # torch's own start-up allocations, before measuring
block = torch.ones(16 * 2**20)
block.sum()
before = resident()
del block
print(kept, before - resident())
"""


def _returned(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout
    kept, returned = out.split()
    return kept, int(returned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_freed_block_stays_in_the_process_instead_of_going_back_to_the_kernel():
    block = 64 * 2**20
    _, returned_by_default = _returned("default")
    kept, returned_when_kept = _returned("keep")
    assert returned_by_default >= block * 9 // 10  # glibc's default: a block this large is unmapped when freed
    assert kept == "True" and returned_when_kept < block // 10
