"""Messages that workers and panes post for the app to route.

Workers run in threads and report only through these (posting is
thread-safe); panes ask for things outside themselves (open another pane,
load a model) through them too, so no pane reaches into another.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui_gpt.app.services.model_catalog import ModelChoice


class EngineReady(Message):
    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session  # engine_session.EngineSession


class EngineFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class RunsPolled(Message):
    """What a poll of the run folders found."""

    def __init__(self, summaries: list[Any], events: dict[str, list[Any]]) -> None:
        super().__init__()
        self.summaries = summaries  # engine RunSummary for every run, newest first
        self.events = events  # run name -> events appended since the last poll


class ModelStatus(Message):
    """The prompt pane's model changed state: loading, ready or failed."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TrainingStatus(Message):
    """A one-line summary of the followed run, for the status bar."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PromptWithModel(Message):
    """Switch to the prompt pane and load this model."""

    def __init__(self, choice: ModelChoice) -> None:
        super().__init__()
        self.choice = choice


class ShowRunStats(Message):
    """Switch to the stats pane with this run shown."""

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run


class ResumeRun(Message):
    """Switch to the train pane and resume this run there."""

    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run


class RunDeleted(Message):
    def __init__(self, run: str) -> None:
        super().__init__()
        self.run = run


class ModelLoaded(Message):
    def __init__(self, loaded: Any, exchanges: list[Any]) -> None:
        super().__init__()
        self.loaded = loaded  # model_catalog.LoadedModel
        self.exchanges = exchanges  # its transcript so far


class ModelLoadFailed(Message):
    def __init__(self, choice: ModelChoice, error: str) -> None:
        super().__init__()
        self.choice = choice
        self.error = error
