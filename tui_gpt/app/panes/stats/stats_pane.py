"""The stats pane: loss and perplexity of the chosen runs, plotted live, with the latest numbers.

Tick runs in the list to overlay them. On a short terminal one plot shows
at a time (P switches loss and perplexity); on a tall one both do. Below them,
the training health of the newest ticked run; a loss spike that any run
reports while the app watches raises a notification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection

from tui_gpt.app import bindings
from tui_gpt.app.panes.stats.health_block import (
    health_title,
    layer_columns,
    ratio_line,
    spike_notice,
    step_line,
)
from tui_gpt.app.panes.stats.metric_plot import LEGEND_STYLES, MetricPlot, run_colours
from tui_gpt.app.widgets.steady_update import update_steady
from tui_gpt.formatting import format_number

if TYPE_CHECKING:
    from engine.runs.progress import RunProgress
    from engine.runs.summary import RunSummary


def latest_numbers(runs: list[tuple[str, RunProgress | None]]) -> Text:
    """The newest evaluation of each run, coloured like its lines in the plots."""
    text = Text()
    for index, (name, progress) in enumerate(runs):
        train_colour, val_colour = (LEGEND_STYLES[c] for c in run_colours(index))
        if index:
            text.append("\n")
        text.append(f"{name}\n", style="bold")
        evaluation = progress.latest_eval if progress else None
        if evaluation is None:
            text.append("  no evaluation yet\n", style="dim")
            continue
        e = evaluation
        text.append(f"  step {e.step + 1:,} · {e.tokens_seen:,} tok\n")
        text.append("  train ", style=train_colour)
        text.append(f"{format_number(e.train_loss, '.3f')} ppl {format_number(e.train_ppl, ',.1f')}\n")
        text.append("  val   ", style=val_colour)
        text.append(f"{format_number(e.val_loss, '.3f')} ppl {format_number(e.val_ppl, ',.1f')}\n")
        if e.val_bpb is not None:
            text.append(f"  val   {format_number(e.val_bpb, '.3f')} bits/byte\n")
    return text if runs else Text("Tick runs above to plot them.", style="dim")


class StatsPane(Horizontal):
    BINDINGS = bindings.STATS_PANE

    axis: reactive[str] = reactive("step")
    metric: reactive[str] = reactive("loss")

    def __init__(self, progress: dict[str, RunProgress], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.progress = progress  # by run name; shared with the app, which updates it
        self._names: list[str] = []  # the runs in the list, newest first
        self._labels: list[str] = []
        self._drawn: dict[str, int] = {}  # evaluations plotted, per run
        self._health_of: tuple[str | None, RunProgress | None] | None = None  # the run shown there, as it was
        # Loss spikes told of, per run, as (step, time); None until the first poll, whose spikes are old news.
        self._spikes_seen: dict[str, set[tuple[int, float]]] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="stats-side"):
            runs = SelectionList[str](id="stats-runs", compact=True)
            runs.border_title = "Runs"
            yield runs
            yield Static(latest_numbers([]), id="stats-latest")
        with Vertical(id="stats-plots"):
            yield MetricPlot("loss", id="plot-loss")
            yield MetricPlot("ppl", id="plot-ppl")
        with Vertical(id="stats-health"):
            yield Static(id="stats-health-numbers")
            yield Static(id="stats-health-layers")

    def on_mount(self) -> None:
        self.watch_metric(self.metric)

    def focus_default(self) -> None:
        self.query_one(SelectionList).focus()

    @property
    def selected(self) -> list[str]:
        chosen = set(self.query_one(SelectionList).selected)
        return [name for name in self._names if name in chosen]

    def runs_updated(self, summaries: list[RunSummary]) -> None:
        names = [summary.name for summary in summaries]
        labels = [f"{summary.name} ({summary.state})" for summary in summaries]
        if labels != self._labels:
            runs = self.query_one(SelectionList)
            chosen = set(runs.selected)
            if not self._names and names:
                chosen = {names[0]}  # at first, the newest run
            self._names, self._labels = names, labels
            runs.clear_options()
            runs.add_options([Selection(label, name, name in chosen) for label, name in zip(labels, names)])
            self.redraw()
        elif self._eval_counts() != self._drawn:
            self.redraw()  # new evaluations
        else:
            self.show_health()  # new steps change the health numbers only
        self.announce_spikes()

    def show_run(self, name: str) -> None:
        """Make sure `name` is among the plotted runs."""
        runs = self.query_one(SelectionList)
        if name in self._names:
            runs.select(name)
            runs.highlighted = self._names.index(name)

    def on_selection_list_selected_changed(self) -> None:
        self.redraw()

    def _eval_counts(self) -> dict[str, int]:
        return {name: len(p.evals) if (p := self.progress.get(name)) else 0 for name in self.selected}

    def redraw(self) -> None:
        self._drawn = self._eval_counts()
        runs = [(name, self.progress.get(name)) for name in self.selected]
        evals = [(name, progress.evals if progress else []) for name, progress in runs]
        for plot in self.query(MetricPlot):
            plot.draw(evals, self.axis)
        update_steady(self.query_one("#stats-latest", Static), latest_numbers(runs))
        self.show_health()

    def show_health(self) -> None:
        """The health of the newest ticked run, redrawn when its events changed."""
        name = next(iter(self.selected), None)
        progress = self.progress.get(name) if name is not None else None
        if self._health_of is not None and self._health_of[0] == name and self._health_of[1] is progress:
            return  # the same run, and no new events
        self._health_of = (name, progress)
        block = self.query_one("#stats-health")
        block.display = name is not None
        if name is None:
            return
        block.border_title = health_title(name, progress)
        numbers, layers = self.query_one("#stats-health-numbers", Static), self.query_one("#stats-health-layers", Static)
        if progress is None:
            update_steady(numbers, Text("no events yet", style="dim"))
            layers.update("")
            return
        update_steady(numbers, Text("\n").join([step_line(progress), ratio_line(progress)]))
        layers.update(layer_columns(progress))

    def announce_spikes(self) -> None:
        """One notification per loss spike that arrived since the last poll, in any run."""
        seen = {name: {(s.step, s.time) for s in progress.spikes} for name, progress in self.progress.items()}
        if self._spikes_seen is not None:
            for name, progress in self.progress.items():
                for spike in progress.spikes:
                    if (spike.step, spike.time) not in self._spikes_seen.get(name, ()):
                        self.notify(spike_notice(name, spike), severity="warning", timeout=10)
        self._spikes_seen = seen

    def watch_axis(self) -> None:
        self.redraw()

    def watch_metric(self, metric: str) -> None:
        self.query_one("#plot-loss").set_class(metric != "loss", "-secondary")
        self.query_one("#plot-ppl").set_class(metric != "ppl", "-secondary")

    def action_toggle_axis(self) -> None:
        self.axis = "tokens" if self.axis == "step" else "step"

    def action_toggle_metric(self) -> None:
        self.metric = "ppl" if self.metric == "loss" else "loss"
