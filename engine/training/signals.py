"""Stopping a training run cleanly from a signal."""

from __future__ import annotations

import os
import signal
import sys

from engine.runs.exit_codes import EXIT_ABORTED


class GracefulStop:
    """SIGINT, SIGTERM and SIGHUP ask the run to stop after its current step.

    A second SIGINT while stopping leaves at once: the last saved checkpoint
    is still intact because checkpoints are written atomically.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None

    def install(self) -> "GracefulStop":
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            sys.stderr.write("\ntui-gpt: stopped at once (second Ctrl-C); the last checkpoint is kept\n")
            sys.stderr.flush()
            os._exit(EXIT_ABORTED)
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        sys.stderr.write(f"\ntui-gpt: {self.signal_name}: stopping after this step and saving a checkpoint"
                         " (Ctrl-C again to quit at once)\n")
        sys.stderr.flush()

    def __call__(self) -> bool:
        return self.requested
