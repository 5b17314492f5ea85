"""One generation off the UI thread: the settings, the token hand-off and the loop.

The worker thread runs `run_generation`, which puts each token into a
`TokenBuffer`; the UI drains the buffer when a `DrainPacer` says, so the
screen is updated once per batch of tokens rather than once per token, and
the worker never waits for the UI.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.services.transcripts import TokenRecord


# A remembered setting above this is not one the settings panel could have written.
MAX_NEW_TOKENS = 100_000


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 50
    temperature: float = 0.0  # 0: greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "GenerationSettings":
        """Settings remembered in app-state.json; ValueError unless every value is usable."""
        if not isinstance(data, dict):
            raise ValueError("generation settings must be a JSON object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        settings = cls(**known)
        settings._check()
        return settings

    def _check(self) -> None:
        def number(value: Any, integer: bool = False) -> bool:
            kinds = int if integer else (int, float)
            return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)

        valid = (
            number(self.max_new_tokens, integer=True) and 0 < self.max_new_tokens <= MAX_NEW_TOKENS
            and number(self.temperature) and 0 <= self.temperature <= 100
            and (self.top_k is None or (number(self.top_k, integer=True) and self.top_k > 0))
            and (self.top_p is None or (number(self.top_p) and 0 < self.top_p <= 1))
            and (self.seed is None or (number(self.seed, integer=True) and 0 <= self.seed < 2**63))
        )
        if not valid:
            raise ValueError(f"unusable generation settings: {self!r}")

    def describe(self) -> str:
        """E.g. 'greedy, 50 tokens' or 'T 0.8, top-k 40, seed 1, 50 tokens'."""
        parts = ["greedy" if self.temperature == 0 else f"T {self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        if self.top_p:
            parts.append(f"top-p {self.top_p:g}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        parts.append(f"{self.max_new_tokens} tokens")
        return ", ".join(parts)


class TokenBuffer:
    """Tokens handed from the generating thread to the UI, plus how the generation ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: list[TokenRecord] = []
        self._done = False
        self._error: str | None = None
        self._stop = threading.Event()

    def put(self, token: TokenRecord) -> None:
        with self._lock:
            self._tokens.append(token)

    def finish(self, error: str | None = None) -> None:
        with self._lock:
            self._done, self._error = True, error

    def take(self) -> tuple[list[TokenRecord], bool, str | None]:
        """The tokens since the last call, whether the generation has ended, and its error."""
        with self._lock:
            tokens, self._tokens = self._tokens, []
            return tokens, self._done, self._error

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


class DrainPacer:
    """When the UI should next drain the token buffer onto the screen.

    Generation and the UI share the CPU's cores: a moment the UI thread spends
    updating, laying out and drawing the transcript is a moment taken from one
    of the threads multiplying the model's matrices, and the whole product
    waits for it. So the delay before each update is chosen to keep the UI
    thread's CPU time near `share` of the time passing: cheap updates (a short
    transcript) come up to 60 times a second, costly ones (a long transcript
    scrolling) less often, but at least `slowest` apart.
    """

    def __init__(self, share: float = 0.04, fastest: float = 1 / 60, slowest: float = 0.25,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.share, self.fastest, self.slowest = share, fastest, slowest
        self._cpu_clock = cpu_clock  # read on the UI thread: its own CPU time
        self._last_cpu = cpu_clock()

    def next_delay(self) -> float:
        """Seconds to wait, from what the UI thread spent since the last call."""
        cpu = self._cpu_clock()
        spent, self._last_cpu = cpu - self._last_cpu, cpu
        return min(self.slowest, max(self.fastest, spent / self.share))


def run_generation(model: Any, tokenizer: Any, prompt: str, settings: GenerationSettings,
                   buffer: TokenBuffer, cancelled: Callable[[], bool]) -> None:
    """Stream tokens into `buffer` until done, stopped, cancelled or failed (the worker's body)."""
    from engine.model.generation import stream
    from engine.model.tokenizer import END_OF_TEXT_ID

    try:
        tokens = stream(
            model, tokenizer, prompt, settings.max_new_tokens,
            temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
            eos_id=END_OF_TEXT_ID, seed=settings.seed,
            should_stop=lambda: buffer.stop_requested or cancelled(),
        )
        for token in tokens:
            if token.token_id == END_OF_TEXT_ID:
                break  # the model ended the text, as `tui-gpt generate` shows it
            buffer.put(TokenRecord(
                token.token_id, token.text, token.prob,
                tuple((alt.token_id, alt.text, alt.prob) for alt in token.alternatives),
            ))
    except Exception as exc:  # shown in the transcript; the app carries on
        buffer.finish(describe_error(exc))
    else:
        buffer.finish()
