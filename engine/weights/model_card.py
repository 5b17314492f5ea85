"""What an exported model is and how it was trained: the README of a Hugging Face folder, the GGUF's description.

Read from the run folder, the contract between training and everyone else:
its config.json (model, corpus, training settings) and metrics.jsonl (the
evaluations up to the exported checkpoint). A model that comes from no run
(a GPT-2 download, a file) gets a card with its config and origin only.
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.model.config import GPTConfig
from engine.runs.events import EvalDone, MetricsReader, RunStarted, StepDone
from engine.runs.store import Run
from engine.runs.summary import describe_model

# The training settings a reader needs to know how the weights came about, as the card names them.
_TRAINING_SETTINGS = (
    ("init_from", "started from"), ("epochs", "epochs"), ("max_steps", "max steps"), ("batch_size", "batch size"),
    ("grad_accum_steps", "gradient accumulation"), ("lr", "peak learning rate (AdamW)"), ("min_lr", "cosine decay to"),
    ("warmup_steps", "warmup steps"), ("weight_decay", "weight decay"), ("grad_clip", "gradient clipping"),
    ("seed", "seed"), ("precision", "precision"),
)


@dataclass(frozen=True)
class ModelCard:
    name: str  # the run's name, or the model's origin
    origin: str  # where the weights were read, for people
    config: GPTConfig
    model: str = ""  # e.g. "gpt-nano, 6.9M params"
    corpus: dict[str, Any] = field(default_factory=dict)  # as the run's config.json has it
    training: dict[str, Any] = field(default_factory=dict)  # the run's TrainConfig, as a dict
    device: str | None = None
    steps: int | None = None  # optimizer steps behind the exported weights
    tokens_seen: int | None = None
    last_eval: EvalDone | None = None  # the last evaluation at or before those steps

    def summary(self) -> str:
        """One paragraph: what it is, what it read, how far it got."""
        if not self.training:
            return f"{self.name}: a GPT-2-style model ({_shape(self.config)}), from {self.origin}."
        text = f"{self.name}: a GPT-2-style model ({self.model or _shape(self.config)}) trained with tui-gpt"
        if self.corpus:
            text += f" on {_corpus_name(self.corpus)}"
        if self.steps is not None:
            text += f" for {self.steps:,} steps"
        if self.last_eval is not None:
            text += (f"; train loss {self.last_eval.train_loss:.3f} (perplexity {self.last_eval.train_ppl:.1f}), "
                     f"val loss {self.last_eval.val_loss:.3f} (perplexity {self.last_eval.val_ppl:.1f})")
        return text + "."

    def markdown(self, usage: str) -> str:
        """The README of an export; `usage` is a Markdown section on how to run it."""
        lines = [f"# {self.name}", "", self.summary(), "", f"Exported by tui-gpt from {self.origin}.", "",
                 "## Model", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in self.config.to_dict().items() if name != "drop_rate"]
        lines += [f"| parameters | {self.config.num_parameters():,} |", "| tokenizer | GPT-2 (r50k_base) |", ""]
        if self.corpus:
            lines += ["## Data", "", f"- corpus: {_corpus_name(self.corpus)}"]
            lines += [f"- {split} tokens: {self.corpus[key]:,}"
                      for split, key in (("training", "train_tokens"), ("validation", "val_tokens"))
                      if isinstance(self.corpus.get(key), int)]
            if self.corpus.get("fingerprint"):
                lines.append(f"- fingerprint: `{self.corpus['fingerprint']}`")
            lines.append("")
        if self.training:
            lines += ["## Training", ""]
            if self.steps is not None:
                seen = f", {self.tokens_seen:,} tokens seen" if self.tokens_seen else ""
                lines.append(f"- steps: {self.steps:,}{seen}")
            lines += [f"- {label}: {self.training[key]}" for key, label in _TRAINING_SETTINGS
                      if self.training.get(key) is not None]
            if self.device:
                lines.append(f"- device: {self.device}")
            if self.config.drop_rate:
                lines.append(f"- dropout: {self.config.drop_rate}")
            lines.append("")
        if self.last_eval is not None:
            e = self.last_eval
            lines += ["## Results", "", f"At step {e.step + 1:,}, on {e.tokens_seen:,} tokens seen:", "",
                      "| split | loss | perplexity |", "| --- | --- | --- |",
                      f"| train | {e.train_loss:.4f} | {e.train_ppl:.2f} |",
                      f"| validation | {e.val_loss:.4f} | {e.val_ppl:.2f} |", ""]
        return "\n".join([*lines, usage.strip(), ""])

    def gguf_metadata(self) -> dict[str, Any]:
        """Facts for GGUF keys of tui-gpt's own (`tui_gpt.*`), beside general.description."""
        facts: dict[str, Any] = {"tui_gpt.origin": self.origin}
        if self.corpus:
            facts["tui_gpt.corpus"] = _corpus_name(self.corpus)
        if self.steps is not None:
            facts["tui_gpt.steps"] = self.steps
        if self.last_eval is not None:
            facts |= {"tui_gpt.train_loss": self.last_eval.train_loss, "tui_gpt.val_loss": self.last_eval.val_loss,
                      "tui_gpt.train_perplexity": self.last_eval.train_ppl,
                      "tui_gpt.val_perplexity": self.last_eval.val_ppl}
        return facts


def card_for_run(run: Run, config: GPTConfig, steps: int, checkpoint: str) -> ModelCard:
    """The card of a run's checkpoint taken after `steps` optimizer steps."""
    stored = run.read_config()
    last: EvalDone | None = None
    started: RunStarted | None = None
    tokens_seen = None
    for event in MetricsReader(run.metrics_path).read_new():
        # A resumed run may repeat steps after its last checkpoint: the latest record of a step wins.
        if isinstance(event, EvalDone) and event.step < steps and (last is None or event.step >= last.step):
            last = event  # EvalDone and StepDone count steps from 0
        elif isinstance(event, StepDone) and event.step == steps - 1:
            tokens_seen = event.tokens_seen
        elif isinstance(event, RunStarted):
            started = event
    training = stored.get("train") if isinstance(stored.get("train"), dict) else {}
    return ModelCard(
        name=run.name, origin=f"run {run.name}, checkpoint {checkpoint}", config=config,
        model=describe_model(stored), corpus=stored.get("corpus") if isinstance(stored.get("corpus"), dict) else {},
        training=training, device=started.device if started else None, steps=steps,
        tokens_seen=tokens_seen, last_eval=last,
    )


def card_for_model(config: GPTConfig, name: str, origin: str) -> ModelCard:
    """The card of weights that come from no run: only their shape and where they were read."""
    return ModelCard(name=name, origin=origin, config=config)


def _corpus_name(corpus: dict[str, Any]) -> str:
    return str(corpus.get("name") or corpus.get("path") or "an unnamed corpus")


def _shape(config: GPTConfig) -> str:
    return f"{config.n_layers} layers x {config.emb_dim}, {config.num_parameters() / 1e6:.1f}M params"
