"""Where the followed run is: state, epoch, step, tokens, speed, ETA, learning rate, losses."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui_gpt.app.services.run_watch import RunHistory
from tui_gpt.app.widgets.steady_update import update_steady

_BAR_WIDTH = 12


def progress_bar(fraction: float, width: int = _BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def number(value: float | None, spec: str) -> str:
    """`value` formatted, or a dash where the metrics file has null (a non-finite loss)."""
    return "–" if value is None else format(value, spec)


def describe_progress(name: str, state: str, history: RunHistory | None, summary: Any = None) -> Text:
    """The lines the progress panel shows for one run, short enough for a narrow column."""
    from tui_gpt.cli.progress import format_duration

    text = Text(name, style="bold")
    text.append(f"\n{state}")
    started = history.started if history else None
    if started is not None:
        devices = f" x{started.world_size}" if started.world_size > 1 else ""
        text.append(f" · {started.device}{devices} · {started.n_params / 1e6:.1f}M params")
    elif summary is not None:
        text.append(f" · {summary.model}")
    if history is None or started is None:
        if summary is not None and summary.message:
            text.append(f"\n{summary.message}", style="italic")
        return text
    total = history.total_steps or 0
    done = history.steps_done
    step = history.last_step
    text.append(f"\nstep {done:,}/{total:,} {progress_bar(done / total if total else 0.0)}")
    if step is not None:
        text.append(f" epoch {step.epoch + 1}")
        text.append(f"\n{step.tokens_seen:,} tokens · {step.tokens_per_sec:,.0f} tok/s")
        eta = history.eta_seconds()
        if eta is not None and state == "running":
            text.append(f" · ETA {format_duration(eta)}")
        text.append(f"\nlr {step.lr:.2e} · loss {number(step.loss, '.3f')}")
    e = history.latest_eval
    if e is not None:
        text.append(f"\neval at {e.step + 1:,}: train {number(e.train_loss, '.3f')} · val {number(e.val_loss, '.3f')}")
        text.append(f"\nperplexity: train {number(e.train_ppl, ',.1f')} · val {number(e.val_ppl, ',.1f')}")
    if history.ended is not None and history.ended.message:
        text.append(f"\n{history.ended.message}", style="italic")
    return text


class RunProgress(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Run"

    def on_mount(self) -> None:
        self.show_nothing()

    def show_nothing(self) -> None:
        self.update(Text("No run followed yet. Set up a run on the left and start it, "
                         "or resume one from the Runs pane.", style="dim"))

    def show_run(self, name: str, state: str, history: RunHistory | None, summary: Any = None) -> None:
        update_steady(self, describe_progress(name, state, history, summary))
