"""Who holds a run's lock: a pid, that process's start time and its command line.

A pid alone is not an identity: after its process ends the number is reused,
and a lock file is only text anyone can write. A UI that stops a run by
signalling the pid in its lock first checks that the live process with that
pid started when the holder did (Linux /proc/<pid>/stat, field 22) and runs
the holder's command line, a `tui-gpt train` one; otherwise it signals nothing.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LockHolder:
    pid: int
    start_time: int | None  # clock ticks after boot; None where there is no /proc to read it from
    command: tuple[str, ...]  # the holder's command line, argument by argument

    @classmethod
    def this_process(cls) -> LockHolder:
        pid = os.getpid()
        return cls(pid, process_start_time(pid), process_command(pid) or tuple(sys.orig_argv))

    def to_text(self) -> str:
        return json.dumps({"pid": self.pid, "start_time": self.start_time, "command": list(self.command)})

    @classmethod
    def from_text(cls, text: str) -> LockHolder | None:
        """The holder a lock file names; None while it is empty or half-written. A bare pid is an old lock."""
        text = text.strip()
        if text.isdigit():
            return cls(int(text), None, ())
        try:
            record = json.loads(text)
            start_time = record["start_time"] if type(record["start_time"]) is int else None
            return cls(int(record["pid"]), start_time, tuple(str(a) for a in record["command"]))
        except (ValueError, TypeError, KeyError):
            return None

    @property
    def is_trainer(self) -> bool:
        """Its command line is a `tui-gpt train` (console script, `python -m tui_gpt` or under torchrun)."""
        for i, arg in enumerate(self.command):
            if _names_tui_gpt(arg):
                return _subcommand(self.command[i + 1 :]) == "train"
        return False

    def why_not_a_live_trainer(self) -> str | None:
        """None if the process now at `pid` is this holder and a tui-gpt trainer; else why it may not be signalled."""
        if self.pid <= 0 or self.pid == os.getpid():
            return f"the lock names process {self.pid}, which is not a trainer"
        if self.start_time is None or not self.is_trainer:
            return f"the lock does not identify process {self.pid} as a tui-gpt trainer"
        if process_start_time(self.pid) != self.start_time or process_command(self.pid) != self.command:
            return f"process {self.pid} is not the tui-gpt trainer that locked the run"
        return None


def _names_tui_gpt(arg: str) -> bool:
    return Path(arg).name in ("tui-gpt", "tui_gpt") or arg.endswith("tui_gpt/__main__.py")


def _subcommand(args: tuple[str, ...]) -> str | None:
    """The command after tui-gpt's own options (only --data-dir comes before it)."""
    rest = list(args)
    while rest and rest[0].startswith("--data-dir"):
        del rest[: 1 if "=" in rest[0] else 2]
    return rest[0] if rest else None


def process_start_time(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (/proc/<pid>/stat field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # Field 2, the command name, is in parentheses and may hold spaces and parentheses itself.
        after_name = stat[stat.rindex(")") + 2 :].split()
        return int(after_name[22 - 3])
    except (OSError, ValueError, IndexError):
        return None


def process_command(pid: int) -> tuple[str, ...] | None:
    """The process's command line (/proc/<pid>/cmdline); None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return tuple(arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]) or None
