"""Keep the memory a training step frees for the next step (glibc on Linux).

PyTorch has no caching allocator on the CPU: every activation and gradient is
a fresh `malloc`, and glibc serves blocks above a threshold with `mmap` and
hands them back to the kernel when freed. A training step frees hundreds of
megabytes that the next step asks for again, and the kernel must then fault
in and zero every page anew: about a tenth of a 124M step on a 2-core CPU
(BENCHMARKS.md). Telling glibc to serve everything from its heap and never
trim it keeps those pages in the process, at the cost of holding on to the
step's peak memory between steps, which training reaches again anyway.

The setting is process-wide, so it is made by processes whose job is to
train (`tui-gpt train`, the benchmark), not by the library's functions.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_SETTINGS = (
    (_M_MMAP_MAX, 0),  # no block from mmap: everything from the heap, which is reused
    (_M_TRIM_THRESHOLD, 2**31 - 1),  # never give the top of the heap back to the kernel
    (_M_ARENA_MAX, 1),  # one heap, so that a block freed by one thread serves every thread
)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process. False where it cannot (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl, ...)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
