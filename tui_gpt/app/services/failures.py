"""Any failure as the one line the app shows for it (a notification or a line in a pane)."""

from __future__ import annotations

import sys

from engine.errors import TuiGptError


def describe_error(exc: BaseException) -> str:
    """A one-line, user-facing description of `exc`; never a traceback."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of GPU memory: try a smaller model or fewer new tokens"
    if isinstance(exc, MemoryError):
        return "out of memory: try a smaller model or fewer new tokens"
    text = " ".join(str(exc).split())
    if isinstance(exc, TuiGptError):  # the engine's errors read as they are
        return text
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
