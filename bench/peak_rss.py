"""A process's own peak resident set, and `python -m bench.peak_rss OUT MODULE ARGS...` to measure a command.

A child's `ru_maxrss` (from getrusage inside it or wait4 outside) is not its own:
Linux carries over the high-water mark of the address space the process had
before exec, which is its parent's (the benchmark, after it ran other cases:
measured here, a child of a 2 GB parent reports 2 GB for `python -c "x=1"`).
`VmHWM` in /proc/self/status belongs to the address space since exec.

Run as a module, it runs MODULE as `python -m MODULE ARGS...` would, and on the
way out (exit status unchanged) writes the peak in bytes to the file OUT.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def peak_rss() -> int:
    """This process's peak resident set in bytes, since it started its program (VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        Path(out).write_text(str(peak_rss()), encoding="ascii")


if __name__ == "__main__":
    main()
