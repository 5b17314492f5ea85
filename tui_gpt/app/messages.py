"""Messages that workers and panes post for the app to route.

Workers run in threads and report only through these (posting is
thread-safe); panes ask for things outside themselves (open another pane,
load a model) through them too, so no pane reaches into another. Payload types
are imported for the type checker only: no message pulls in the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tui_gpt.app.services.model_catalog import ModelChoice

if TYPE_CHECKING:
    from engine.runs.events import CorpusPreparing
    from engine.runs.summary import RunSummary
    from tui_gpt.app.services.engine_session import EngineSession
    from tui_gpt.app.services.model_catalog import LoadedModel
    from tui_gpt.app.services.transcripts import Exchange


class EngineReady(Message):
    def __init__(self, session: EngineSession) -> None:
        super().__init__()
        self.session = session


class EngineFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class RunsPolled(Message):
    """What a poll of the run folders found: every run, newest first, or None if the poll failed;
    and the runs whose corpus is being prepared (engine.runs.preparation), by name."""

    def __init__(self, summaries: list[RunSummary] | None,
                 preparing: dict[str, CorpusPreparing] | None = None) -> None:
        super().__init__()
        self.summaries = summaries
        self.preparing = preparing or {}


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
    def __init__(self, loaded: LoadedModel, exchanges: list[Exchange]) -> None:
        super().__init__()
        self.loaded = loaded
        self.exchanges = exchanges  # its transcript so far


class ModelLoadFailed(Message):
    def __init__(self, choice: ModelChoice, error: str) -> None:
        super().__init__()
        self.choice = choice
        self.error = error
