"""The engine, loaded in the background: what the panes need once torch is imported.

Importing torch takes over a second, so the app draws its first frame first
and calls `load_engine` from a worker thread; the panes get the resulting
`EngineSession` when it is ready.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tui_gpt.app.services.app_state import AppState
from tui_gpt.app.services.transcripts import TranscriptStore

if TYPE_CHECKING:  # the engine is loaded by load_engine, off the UI thread
    import tiktoken

    from engine.model.config import GPTConfig
    from engine.runs.store import RunStore
    from engine.training.settings import Setting, TrainConfig


@dataclass
class EngineSession:
    data_dir: Path
    store: RunStore
    tokenizer: tiktoken.Encoding
    device: str  # where prompted models run: "cuda", "mps" or "cpu"
    transcripts: TranscriptStore
    state: AppState
    presets: dict[str, GPTConfig]  # by name
    recipes: dict[str, TrainConfig]  # by name
    train_defaults: TrainConfig  # with its default values
    train_settings: tuple[Setting, ...]  # engine.training.settings.SETTINGS: what the training form shows


def load_engine(explicit_data_dir: Path | None) -> EngineSession:
    """Import the engine and open the data dir (slow: call it off the UI thread)."""
    from engine.model.config import PRESETS
    from engine.training.device import resolve_device
    from engine.runs.store import RunStore, default_data_dir
    from engine.model.tokenizer import get_tokenizer
    from engine.training.settings import RECIPES, SETTINGS, TrainConfig

    # Imported here so that the first generation or model load does not pay for them.
    import engine.model.generation  # noqa: F401
    import engine.weights.resolver  # noqa: F401

    data_dir = default_data_dir(explicit_data_dir)
    return EngineSession(
        data_dir=data_dir,
        store=RunStore(data_dir),
        tokenizer=get_tokenizer(),
        device=str(resolve_device("auto")),
        transcripts=TranscriptStore(data_dir / "transcripts"),
        state=AppState(data_dir).load(),
        presets=dict(PRESETS),
        recipes=dict(RECIPES),
        train_defaults=TrainConfig(),
        train_settings=SETTINGS,
    )
