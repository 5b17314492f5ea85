"""`python -m bench.peak_rss OUT MODULE ARGS...`: run a module as `python -m` would, then record its peak RSS.

A child's `ru_maxrss` (from getrusage inside it or wait4 outside) is not its own:
Linux carries over the high-water mark of the address space the process had
before exec, which is its parent's (the benchmark, after it ran other cases:
measured here, a child of a 2 GB parent reports 2 GB for `python -c "x=1"`).
`VmHWM` (bench.load_memory.rss_bytes) belongs to the address space since exec.
On the way out (exit status unchanged) the peak in bytes is written to the file OUT.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from .load_memory import rss_bytes


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        Path(out).write_text(str(rss_bytes("VmHWM")), encoding="ascii")


if __name__ == "__main__":
    main()
