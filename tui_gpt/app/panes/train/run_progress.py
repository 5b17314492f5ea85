"""Where the followed run is: state, epoch, step, tokens, speed, ETA, learning rate, losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from tui_gpt.app.widgets.steady_update import update_steady
from tui_gpt.formatting import (
    format_duration,
    format_number,
    preparation_figures,
    preparation_fraction,
    progress_bar,
)

if TYPE_CHECKING:
    from engine.runs.progress import RunProgress
    from engine.runs.summary import RunSummary

_BAR_WIDTH = 12


def describe_progress(name: str, state: str, progress: RunProgress | None, summary: RunSummary | None = None) -> Text:
    """The lines the progress panel shows for one run, short enough for a narrow column."""
    text = Text(name, style="bold")
    text.append(f"\n{state}")
    started = progress.started if progress else None
    if started is not None:
        devices = f" x{started.world_size}" if started.world_size > 1 else ""
        text.append(f" · {started.device}{devices} · {started.n_params / 1e6:.1f}M params")
    elif summary is not None:
        text.append(f" · {summary.model}")
    preparing = progress.preparing if progress else None
    if preparing is not None:  # before the session's first step: its corpus is being tokenized
        fraction = preparation_fraction(preparing)
        text.append(f"\npreparing the corpus {progress_bar(fraction, _BAR_WIDTH)} {fraction:.0%}")
        figures = preparation_figures(preparing)
        text.append("\n" + " · ".join(figures[name] for name in ("size", "speed", "eta") if name in figures))
        text.append(f"\n{figures['tokens']} · {figures['documents']}")
        return text
    if progress is None or started is None:
        if summary is not None and summary.message:
            text.append(f"\n{summary.message}", style="italic")
        return text
    total = progress.total_steps or 0
    done = progress.steps_done
    step = progress.last_step
    text.append(f"\nstep {done:,}/{total:,} {progress_bar(done / total if total else 0.0, _BAR_WIDTH)}")
    if step is not None:
        text.append(f" epoch {step.epoch + 1}")
        text.append(f"\n{step.tokens_seen:,} tokens · {step.tokens_per_sec:,.0f} tok/s")
        eta = progress.eta_seconds()
        if eta is not None and state == "running":
            text.append(f" · ETA {format_duration(eta)}")
        text.append(f"\nlr {step.lr:.2e} · loss {format_number(step.loss, '.3f')}")
    e = progress.latest_eval
    if e is not None:
        text.append(f"\neval at {e.step + 1:,}: train {format_number(e.train_loss, '.3f')} · "
                    f"val {format_number(e.val_loss, '.3f')}")
        text.append(f"\nperplexity: train {format_number(e.train_ppl, ',.1f')} · val {format_number(e.val_ppl, ',.1f')}")
    if progress.ended is not None and progress.ended.message:
        text.append(f"\n{progress.ended.message}", style="italic")
    return text


class RunProgressPanel(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Run"

    def on_mount(self) -> None:
        self.show_nothing()

    def show_nothing(self) -> None:
        self.update(Text("No run followed yet. Set up a run on the left and start it, "
                         "or resume one from the Runs pane.", style="dim"))

    def show_run(self, name: str, state: str, progress: RunProgress | None, summary: RunSummary | None = None) -> None:
        update_steady(self, describe_progress(name, state, progress, summary))
