"""Numbers for people, the same in the CLI and the app: sizes, durations, losses, progress bars."""

from __future__ import annotations

# Where the metrics file has null (a non-finite loss) or nothing is known yet.
MISSING = "-"


def format_number(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or a dash when there is none."""
    return MISSING if value is None else format(value, spec)


def human_size(size: int) -> str:
    """Bytes for people: '512 B', '3.4 KB', '1.2 GB' (powers of 1024)."""
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """A short duration such as '45s', '3m12s' or '2h05m'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_bar(fraction: float, width: int, chars: tuple[str, str] = ("█", "░")) -> str:
    """`fraction` (clamped to 0..1) of `width` cells filled: full cells, then empty ones."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    full, empty = chars
    return full * filled + empty * (width - filled)


def preparation_figures(progress) -> dict[str, str]:
    """A corpus being tokenized (engine.data.prepare.Progress or a CorpusPreparing event), as figures:
    {"size": "120/800 MB", "tokens": "3,100,000 tokens", "documents": "12,000 documents", "speed": "25.0 MB/s",
    "eta": "ETA 27s"} (no ETA while the source's size or the speed is unknown)."""
    rate = progress.bytes_read / progress.seconds if progress.seconds > 0 else 0.0
    total = f"/{progress.bytes_total / 2**20:,.0f}" if progress.bytes_total > 0 else ""
    figures = {"size": f"{progress.bytes_read / 2**20:,.0f}{total} MB", "tokens": f"{progress.tokens:,} tokens",
               "documents": f"{progress.documents:,} documents", "speed": f"{rate / 2**20:.1f} MB/s"}
    if rate > 0 and progress.bytes_total > progress.bytes_read:
        figures["eta"] = f"ETA {format_duration((progress.bytes_total - progress.bytes_read) / rate)}"
    return figures


def describe_preparation(progress) -> str:
    """The figures of a corpus being tokenized in one line, as the CLI logs it."""
    return "preparing the corpus: " + ", ".join(preparation_figures(progress).values())


def preparation_fraction(progress) -> float:
    """How much of the source a preparation has read, 0..1 (0 while its size is unknown)."""
    return min(1.0, progress.bytes_read / progress.bytes_total) if progress.bytes_total > 0 else 0.0
