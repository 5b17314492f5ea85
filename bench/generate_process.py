"""Seconds from starting `tui-gpt generate` to its first generated character, as a person waits for it.

    python -m bench.generate_process DATA_DIR RUN_NAME [ROUNDS]

Each round starts a fresh `python -m tui_gpt generate --run-name RUN_NAME` (importing torch,
checking and loading the checkpoint, the first forward pass included) and reads its stdout until
one character past the echoed prompt arrives. Prints every round and the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

PROMPT = "Every effort moves you"


def first_character_seconds(data_dir: str, run_name: str) -> float:
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "tui_gpt", "generate", "--data-dir", data_dir, "--run-name", run_name,
         "--prompt", PROMPT, "--max-new-tokens", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = b""
    while len(seen) <= len(PROMPT.encode()):
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            raise RuntimeError(f"tui-gpt generate ended before its first token (exit code {process.wait()})")
        seen += chunk
    elapsed = time.perf_counter() - start
    process.wait()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rounds = int(args[2]) if len(args) == 3 else 5
    times = sorted(first_character_seconds(args[0], args[1]) for _ in range(rounds))
    print("first generated character after (s): " + ", ".join(f"{t:.2f}" for t in times)
          + f"; median {statistics.median(times):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
