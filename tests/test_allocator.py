"""engine.fast.allocator: freed memory stays in the process, so reusing it costs no page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates, fills, frees a 64 MiB tensor again and again; prints the page faults of the
# later rounds (the first ones fault the heap's pages in, whatever the allocator does).
PROGRAM = """
import resource, sys, torch
from engine.fast.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    torch.ones(16 * 2**20).sum()
before = faults()
for _ in range(5):
    torch.ones(16 * 2**20).sum()
print(kept, faults() - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True).stdout
    kept, faults = out.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_kept_memory_is_reused_without_faulting_its_pages_in_again():
    _, default_faults = _faults("default")
    kept, kept_faults = _faults("keep")
    pages = 64 * 2**20 // 4096
    assert default_faults >= 4 * pages  # glibc's default: each round maps and zero-fills the block anew
    # With memory kept, most rounds reuse the freed block without a fault. Where other allocations
    # land between rounds can leave the freed block too small once, so one or two rounds may fault.
    assert kept == "True" and kept_faults <= default_faults // 2
