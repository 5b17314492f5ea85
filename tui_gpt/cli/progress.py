"""Training progress in a terminal: one live bar on a TTY, plain log lines otherwise.

`TrainingProgress` shows the engine's training events; what they add up to
(steps, losses, speed, ETA) is engine.runs.progress's, the same fold the app
uses, so both show the same numbers. On a terminal it keeps a single status
line (step, epoch, loss, val loss, tokens/s, ETA) redrawn in place, and prints
evaluations, samples and checkpoints as lines above it. When the output is a
file or a pipe it writes one plain line per event instead, plus a step line
every `log_every` steps, so logs stay readable and small.
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Callable, TextIO

from engine.runs.events import (
    CheckpointSaved, CorpusPreparing, EvalDone, Event, LossSpike, RunEnded, RunStarted, SampleGenerated, StepDone,
)
from engine.runs.progress import RunProgress
from tui_gpt.formatting import (
    describe_preparation,
    format_duration,
    format_number,
    preparation_figures,
    preparation_fraction,
    progress_bar,
)

_CLEAR_LINE = "\r\x1b[K"
_BAR_WIDTH = 20
_LEAST_TELLING_FIRST = ("mfu", "bar", "documents", "epoch", "speed", "val", "tokens")
_PREPARATION_LOG_SECONDS = 10  # how often a log (not a terminal) gets a line on a corpus being prepared


class TrainingProgress:
    """Shows a training run's events on `stream`; pass `on_event` and `log` to the trainer."""

    def __init__(self, stream: TextIO, *, live: bool, epochs: int | None = None, log_every: int = 10,
                 clock: Callable[[], float] = time.monotonic, min_redraw_interval: float = 0.1):
        self.stream = stream
        self.live = live
        self.epochs = epochs
        self.log_every = max(1, log_every)
        self._clock = clock
        self._min_redraw_interval = min_redraw_interval
        self._bar_chars = _bar_chars(stream)
        self.progress = RunProgress()
        self._bar_shown = False
        self._last_redraw = float("-inf")
        self._last_preparation_line = float("-inf")

    # -- what the trainer calls ------------------------------------------------

    def log(self, message: str) -> None:
        """Print a message line (a corpus warning, a note) without breaking the bar."""
        self._print_line(message)

    def on_event(self, event: Event) -> None:
        self.progress.add(event)
        match event:
            case CorpusPreparing():
                self._on_preparing()
            case RunStarted():
                self._on_started(event)
            case StepDone():
                self._on_step()
            case EvalDone():
                self._print_line(
                    f"eval at step {event.step + 1}: train loss {format_number(event.train_loss, '.3f')} "
                    f"(ppl {format_number(event.train_ppl, '.1f')}), val loss {format_number(event.val_loss, '.3f')} "
                    f"(ppl {format_number(event.val_ppl, '.1f')})"
                    + (f", val {event.val_bpb:.3f} bits/byte" if event.val_bpb is not None else "")
                )
            case SampleGenerated():
                # One line per sample, as the book prints them.
                self._print_line(f"sample at step {event.step + 1}: {event.text.replace(chr(10), ' ')}")
            case CheckpointSaved():
                best = " (best so far)" if event.best else ""
                self._print_line(f"checkpoint at step {event.step} saved{best}: {event.path}")
            case RunEnded():
                self._on_ended()
            case LossSpike():
                loss = "not finite" if event.loss is None or not math.isfinite(event.loss) else f"{event.loss:.3f}"
                self._print_line(f"loss spike at step {event.step + 1}: loss {loss}, recent mean "
                                 f"{event.recent_mean:.3f} ± {event.recent_std:.3f}")

    def close(self) -> None:
        """End the live line so whatever is printed next starts on a fresh line."""
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    # -- event handlers ----------------------------------------------------------

    def _on_started(self, event: RunStarted) -> None:
        where = f"{event.device} x{event.world_size}" if event.world_size > 1 else event.device
        steps = f"from step {event.step} to {event.total_steps}" if event.resumed else f"for {event.total_steps} steps"
        self._print_line(f"training {event.n_params:,} parameters on {where} {steps}")

    def _on_preparing(self) -> None:
        now = self._clock()
        if self.live:
            if now - self._last_redraw >= self._min_redraw_interval:
                self._last_redraw = now
                self._draw_bar()
        elif now - self._last_preparation_line >= _PREPARATION_LOG_SECONDS:
            self._last_preparation_line = now
            self._print_line(describe_preparation(self.progress.preparing))

    def _on_step(self) -> None:
        if self.live:
            now = self._clock()
            if now - self._last_redraw >= self._min_redraw_interval or self._is_last_step():
                self._last_redraw = now
                self._draw_bar()
        elif self._is_log_step():
            self._print_line(" | ".join(self._step_fields(live=False).values()))

    def _on_ended(self) -> None:
        if self.live and self.progress.last_step is not None:
            self._draw_bar()  # the final numbers, even if the last redraw was throttled
        self.close()

    # -- rendering -----------------------------------------------------------------

    def _is_last_step(self) -> bool:
        return self.progress.steps_done == self.progress.total_steps

    def _is_log_step(self) -> bool:
        done, started = self.progress.steps_done, self.progress.started
        first_of_session = started is not None and done == started.step + 1
        return first_of_session or done % self.log_every == 0 or self._is_last_step()

    def _step_fields(self, live: bool) -> dict[str, str]:
        progress = self.progress
        total = progress.total_steps
        fields = {"step": f"step {progress.steps_done}/{total if total is not None else '?'}"}
        if live and total:
            fraction = min(1.0, progress.steps_done / total)
            fields["bar"] = f"{progress_bar(fraction, _BAR_WIDTH, self._bar_chars)} {fraction:4.0%}"
        step = progress.last_step
        if step is None:
            return fields
        fields["epoch"] = f"epoch {step.epoch + 1}/{self.epochs}" if self.epochs else f"epoch {step.epoch + 1}"
        fields["loss"] = f"loss {format_number(step.loss, '.3f')}"
        if progress.latest_eval is not None:
            fields["val"] = f"val {format_number(progress.latest_eval.val_loss, '.3f')}"
        if not live:
            fields["lr"] = f"lr {step.lr:.2e}"
        fields["speed"] = f"{step.tokens_per_sec:,.0f} tok/s"
        if step.mfu is not None:
            fields["mfu"] = f"MFU {step.mfu:.0%}"
        eta = progress.eta_seconds()
        if eta is not None:
            fields["eta"] = f"ETA {format_duration(eta)}"
        return fields

    def _draw_bar(self) -> None:
        """The live line: the steps, or before the first one the corpus being tokenized."""
        fields = self._preparation_fields() if self.progress.preparing is not None else self._step_fields(live=True)
        # Never wider than the terminal, since a wrapped line cannot be redrawn in
        # place: on a narrow one, leave out the least telling fields first.
        width = shutil.get_terminal_size(fallback=(80, 24)).columns - 1
        for name in _LEAST_TELLING_FIRST:
            if len(" | ".join(fields.values())) <= width:
                break
            fields.pop(name, None)
        line = " | ".join(fields.values())
        self.stream.write(_CLEAR_LINE + line[: max(1, width)])
        self.stream.flush()
        self._bar_shown = True

    def _preparation_fields(self) -> dict[str, str]:
        preparing = self.progress.preparing
        fraction = preparation_fraction(preparing)
        return {"what": "preparing the corpus",
                "bar": f"{progress_bar(fraction, _BAR_WIDTH, self._bar_chars)} {fraction:4.0%}",
                **preparation_figures(preparing)}

    def _print_line(self, text: str) -> None:
        if self.live and self._bar_shown:
            self.stream.write(_CLEAR_LINE + text + "\n")
            self._draw_bar()
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


def _bar_chars(stream: TextIO) -> tuple[str, str]:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return ("█", "░") if encoding == "utf8" else ("#", "-")
