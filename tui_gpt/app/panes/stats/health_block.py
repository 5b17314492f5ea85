"""Training health of one run under its plots: the latest step's numbers and the update-to-weight ratios.

The numbers come from the run's events (engine.runs.progress): the latest
`StepDone` (gradient norm, learning rate, speed, MFU) and the latest
`UpdateRatios`, which the trainer measures at evaluations. Tall terminals also
list the largest ratio of each layer.
"""

from __future__ import annotations

import re
from statistics import median
from typing import TYPE_CHECKING

from rich.columns import Columns
from rich.console import Group
from rich.text import Text

from tui_gpt.formatting import format_number

if TYPE_CHECKING:
    from engine.runs.events import LossSpike
    from engine.runs.progress import RunProgress

SEPARATOR = " · "
# A parameter's layer: the numbered block it sits in ("trf_blocks.3"), else its module ("tok_emb").
_NUMBERED_BLOCK = re.compile(r"^(.*?\.\d+)\.")


def step_line(progress: RunProgress) -> Text:
    """Gradient norm, learning rate, tokens/s, step time and MFU of the latest step."""
    step = progress.last_step
    if step is None:
        return Text("no steps yet", style="dim")
    parts = [f"grad norm {format_number(step.grad_norm, '.3g')}", f"lr {format_number(step.lr, '.1e')}",
             f"{format_number(step.tokens_per_sec, ',.0f')} tok/s", f"{format_number(step.step_time, '.3g')} s/step"]
    if step.mfu is not None:
        parts.append(f"MFU {step.mfu:.0%}")
    return Text(SEPARATOR.join(parts))


def ratio_line(progress: RunProgress) -> Text:
    """The median and the largest update-to-weight ratio of the latest measurement, naming the largest."""
    measured = progress.update_ratios
    ratios = {name: r for name, r in measured.ratios.items() if r is not None} if measured else {}
    if not ratios:
        return Text("update/weight: measured at the next evaluation", style="dim")
    largest = max(ratios, key=ratios.__getitem__)
    return Text(f"update/weight median {median(ratios.values()):.1e}{SEPARATOR}"
                f"max {ratios[largest]:.1e} ({largest})")


def layer_ratios(ratios: dict[str, float | None]) -> dict[str, float]:
    """The largest ratio of each layer, in the model's order."""
    layers: dict[str, float] = {}
    for name, ratio in ratios.items():
        if ratio is None:
            continue
        match = _NUMBERED_BLOCK.match(name)
        layer = match.group(1) if match else name.rpartition(".")[0] or name
        layers[layer] = max(ratio, layers.get(layer, ratio))
    return layers


def layer_columns(progress: RunProgress) -> Group | Text:
    """Each layer's largest update-to-weight ratio, in as many columns as fit."""
    if progress.update_ratios is None:
        return Text()
    layers = layer_ratios(progress.update_ratios.ratios)
    entries = [Text(f"{layer} {ratio:.1e}") for layer, ratio in layers.items()]
    title = Text(f"update/weight per layer (max) at step {progress.update_ratios.step + 1:,}", style="dim")
    return Group(title, Columns(entries, padding=(0, 2)))


def health_title(name: str, progress: RunProgress | None) -> str:
    spikes = len(progress.spikes) if progress else 0
    noun = "loss spike" if spikes == 1 else "loss spikes"
    return f"Health · {name}" + (f" · {spikes} {noun}" if spikes else "")


def spike_notice(run: str, spike: LossSpike) -> str:
    """The one line that tells of a loss spike."""
    step = f"{spike.step + 1:,}"
    if spike.reason == "non-finite":
        return f"{run}: the loss is not finite at step {step}"
    return (f"{run}: loss spike at step {step}: {format_number(spike.loss, '.3f')} "
            f"(recent mean {format_number(spike.recent_mean, '.3f')})")
