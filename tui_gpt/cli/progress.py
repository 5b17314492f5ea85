"""Training progress in a terminal: one live bar on a TTY, plain log lines otherwise.

`TrainingProgress` consumes the engine's training events. On a terminal it keeps
a single status line (step, epoch, loss, val loss, tokens/s, ETA) redrawn in
place, and prints evaluations, samples and checkpoints as lines above it. When
the output is a file or a pipe it writes one plain line per event instead, plus
a step line every `log_every` steps, so logs stay readable and small.
"""

from __future__ import annotations

import shutil
import time
from typing import Callable, TextIO

from engine.runs.events import CheckpointSaved, EvalDone, Event, RunEnded, RunStarted, SampleGenerated, StepDone

_CLEAR_LINE = "\r\x1b[K"
_BAR_WIDTH = 20
_LEAST_TELLING_FIRST = ("mfu", "bar", "epoch", "speed", "val")


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
        self._total_steps: int | None = None
        self._first_step = 0  # steps already done when this session started (resume)
        self._started_at: float | None = None
        self._last_step: StepDone | None = None
        self._val_loss: float | None = None
        self._bar_shown = False
        self._last_redraw = float("-inf")

    # -- what the trainer calls ------------------------------------------------

    def log(self, message: str) -> None:
        """Print a message line (a corpus warning, a note) without breaking the bar."""
        self._print_line(message)

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._on_started(event)
        elif isinstance(event, StepDone):
            self._on_step(event)
        elif isinstance(event, EvalDone):
            self._val_loss = event.val_loss
            self._print_line(
                f"eval at step {event.step + 1}: train loss {event.train_loss:.3f} (ppl {event.train_ppl:.1f}), "
                f"val loss {event.val_loss:.3f} (ppl {event.val_ppl:.1f})"
            )
        elif isinstance(event, SampleGenerated):
            # One line per sample, as the book prints them.
            self._print_line(f"sample at step {event.step + 1}: {event.text.replace(chr(10), ' ')}")
        elif isinstance(event, CheckpointSaved):
            best = " (best so far)" if event.best else ""
            self._print_line(f"checkpoint at step {event.step} saved{best}: {event.path}")
        elif isinstance(event, RunEnded):
            self._on_ended(event)

    def close(self) -> None:
        """End the live line so whatever is printed next starts on a fresh line."""
        if self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False

    # -- event handlers ----------------------------------------------------------

    def _on_started(self, event: RunStarted) -> None:
        self._total_steps = event.total_steps
        self._first_step = event.step
        self._started_at = self._clock()
        where = f"{event.device} x{event.world_size}" if event.world_size > 1 else event.device
        steps = f"from step {event.step} to {event.total_steps}" if event.resumed else f"for {event.total_steps} steps"
        self._print_line(f"training {event.n_params:,} parameters on {where} {steps}")

    def _on_step(self, event: StepDone) -> None:
        self._last_step = event
        if self.live:
            now = self._clock()
            if now - self._last_redraw >= self._min_redraw_interval or self._steps_done() == self._total_steps:
                self._last_redraw = now
                self._draw_bar()
        elif self._is_log_step(event.step + 1):
            self._print_line(" | ".join(self._step_fields(live=False).values()))

    def _on_ended(self, event: RunEnded) -> None:
        if self.live and self._last_step is not None:
            self._draw_bar()  # the final numbers, even if the last redraw was throttled
        self.close()

    # -- rendering -----------------------------------------------------------------

    def _steps_done(self) -> int:
        # StepDone, EvalDone and SampleGenerated carry the 0-based index of the step just
        # taken; what is shown everywhere is the number of steps done, as CheckpointSaved has it.
        return 0 if self._last_step is None else self._last_step.step + 1

    def _is_log_step(self, done: int) -> bool:
        first_of_session = done == self._first_step + 1
        return first_of_session or done % self.log_every == 0 or done == self._total_steps

    def _eta_seconds(self) -> float | None:
        done_here = self._steps_done() - self._first_step
        if self._total_steps is None or self._started_at is None or done_here <= 0:
            return None
        # Wall-clock rate since the start, so evaluation and checkpoint time count too.
        per_step = (self._clock() - self._started_at) / done_here
        return per_step * max(0, self._total_steps - self._steps_done())

    def _step_fields(self, live: bool) -> dict[str, str]:
        step = self._last_step
        total = self._total_steps if self._total_steps is not None else "?"
        fields = {"step": f"step {self._steps_done()}/{total}"}
        if live and self._total_steps:
            fields["bar"] = self._bar()
        if step is None:
            return fields
        fields["epoch"] = f"epoch {step.epoch + 1}/{self.epochs}" if self.epochs else f"epoch {step.epoch + 1}"
        fields["loss"] = f"loss {step.loss:.3f}"
        if self._val_loss is not None:
            fields["val"] = f"val {self._val_loss:.3f}"
        if not live:
            fields["lr"] = f"lr {step.lr:.2e}"
        fields["speed"] = f"{step.tokens_per_sec:,.0f} tok/s"
        if step.mfu is not None:
            fields["mfu"] = f"MFU {step.mfu:.0%}"
        eta = self._eta_seconds()
        if eta is not None:
            fields["eta"] = f"ETA {format_duration(eta)}"
        return fields

    def _bar(self) -> str:
        fraction = min(1.0, self._steps_done() / self._total_steps)
        filled = round(fraction * _BAR_WIDTH)
        full, empty = self._bar_chars
        return f"{full * filled}{empty * (_BAR_WIDTH - filled)} {fraction:4.0%}"

    def _draw_bar(self) -> None:
        fields = self._step_fields(live=True)
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
