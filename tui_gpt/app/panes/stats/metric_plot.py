"""A live plot of train and validation loss (or perplexity) of one or more runs, drawn by plotext."""

from __future__ import annotations

from typing import Any, Literal

from textual_plotext import PlotextPlot

Metric = Literal["loss", "ppl"]
Axis = Literal["step", "tokens"]

# (train, validation) colour of each overlaid run, in order; the book plots train solid, val dashed.
RUN_COLOURS = (("blue", "orange"), ("green", "red"), ("cyan", "magenta"), ("yellow", "white"))
# plotext's own colour names as they look in the terminal, for the legend beside the plot.
LEGEND_STYLES = {"blue": "blue", "orange": "dark_orange", "green": "green", "red": "red", "cyan": "cyan",
                 "magenta": "magenta", "yellow": "yellow", "white": "white"}


def run_colours(index: int) -> tuple[str, str]:
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def series(evals: list[Any], metric: Metric, axis: Axis) -> tuple[list[float], list[float], list[float]]:
    """x, train and validation values of the evaluations that have both (null marks a non-finite loss)."""
    train_field, val_field = ("train_loss", "val_loss") if metric == "loss" else ("train_ppl", "val_ppl")
    points = [
        (e.step + 1 if axis == "step" else e.tokens_seen, getattr(e, train_field), getattr(e, val_field))
        for e in evals
    ]
    points = [p for p in points if p[1] is not None and p[2] is not None]
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


class MetricPlot(PlotextPlot):
    def __init__(self, metric: Metric, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.metric: Metric = metric

    def draw(self, runs: list[tuple[str, list[Any]]], axis: Axis) -> None:
        """Plot each (run name, evaluations) pair; the run's position picks its colours."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        name = "Loss" if self.metric == "loss" else "Perplexity"
        plt.title(name if any(evals for _, evals in runs) else f"{name}: no evaluations yet")
        plt.xlabel("step" if axis == "step" else "tokens seen")
        plt.yscale("log" if self.metric == "ppl" else "linear")
        for index, (run, evals) in enumerate(runs):
            xs, train, val = series(evals, self.metric, axis)
            if not xs:
                continue
            train_colour, val_colour = run_colours(index)
            label = run if len(runs) > 1 else ""
            plt.plot(xs, train, marker="braille", color=train_colour, label=f"{label} train".strip())
            plt.plot(xs, val, marker="braille", color=val_colour, label=f"{label} val".strip())
        self.refresh()
