"""The sample timeline: the text a run generated at each evaluation, to browse step by step.

Going down the list one reads the model learning: gibberish, then words,
then phrases of the corpus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from engine.runs.events import EvalDone, SampleGenerated

_HINT = "Samples appear here at each evaluation."


def sample_label(sample: SampleGenerated, val_loss: float | None) -> str:
    loss = f" · val {val_loss:.2f}" if val_loss is not None else ""
    return f"step {sample.step + 1:,}{loss}"


def sample_text(sample: SampleGenerated) -> Text:
    """Where in training it was written, the prompt in bold, then what the model wrote after it."""
    text = Text(f"step {sample.step + 1:,} · {sample.tokens_seen:,} tokens seen\n", style="dim")
    text.append(sample.prompt, style="bold")
    continuation = sample.text[len(sample.prompt):] if sample.text.startswith(sample.prompt) else sample.text
    text.append(continuation)
    return text


class SampleTimeline(Vertical):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Samples"
        self._samples: list[SampleGenerated] = []
        self._run: str | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(id="sample-steps", compact=True)
        with VerticalScroll(id="sample-scroll"):
            yield Static(Text(_HINT, style="dim"), id="sample-text")

    def show_samples(self, run: str | None, samples: list[SampleGenerated], evals: list[EvalDone]) -> None:
        """Show `run`'s samples, adding only the new ones when it is the run already shown."""
        steps = self.query_one(OptionList)
        if run != self._run or len(samples) < len(self._samples):
            steps.clear_options()
            self._samples = []
            self._run = run
            self.border_title = "Samples"
            self.query_one("#sample-text", Static).update(Text(_HINT, style="dim"))
        new = samples[len(self._samples):]
        if not new:
            return
        following = steps.highlighted is None or steps.highlighted == len(self._samples) - 1
        val_loss = {e.step: e.val_loss for e in evals}
        steps.add_options([Option(sample_label(s, val_loss.get(s.step))) for s in new])
        self._samples = list(samples)
        self.border_title = f"Samples ({len(samples)})"
        if following:  # stay on the newest unless the person went back to an older one
            steps.highlighted = len(samples) - 1

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.query_one("#sample-text", Static).update(sample_text(self._samples[event.option_index]))
