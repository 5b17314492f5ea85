"""The tui-gpt Textual app: a switchboard between four panes, the engine and the run folders.

The app itself only routes: it loads the engine in the background, polls
the run folders (a worker reads new metrics; the panes are told what
changed), switches panes, and asks before quitting while runs train. All
the work of prompting, training and plotting lives in the panes.
"""

from __future__ import annotations

import gc
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, TabbedContent, TabPane

from engine.runs.untrusted_files import read_json
from tui_gpt.app import bindings
from tui_gpt.app.services.engine_session import EngineSession, load_engine
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.messages import (
    EngineFailed,
    EngineReady,
    ModelStatus,
    PromptWithModel,
    ResumeRun,
    RunDeleted,
    RunsPolled,
    ShowRunStats,
    TrainingStatus,
)
from tui_gpt.app.services.run_watch import RunWatch
from tui_gpt.app.screens.quit_while_training import QuitWhileTrainingScreen
from tui_gpt.app.panes.inspect.inspect_pane import InspectPane
from tui_gpt.app.panes.prompt.prompt_input import PromptInput
from tui_gpt.app.panes.prompt.prompt_pane import PromptPane
from tui_gpt.app.panes.runs.runs_pane import RunsPane
from tui_gpt.app.panes.stats.stats_pane import StatsPane
from tui_gpt.app.widgets.status_bar import StatusBar
from tui_gpt.app.panes.train.train_pane import TrainPane
from tui_gpt.app.panes.prompt.transcript_view import TranscriptView

POLL_INTERVAL = 0.5  # seconds between looks at the run folders
PANE_TITLES = {"prompt": "Prompt", "train": "Train", "stats": "Stats", "runs": "Runs", "inspect": "Inspect"}


class TuiGptApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tui-gpt"
    BINDINGS = bindings.APP
    AUTO_FOCUS = "#prompt-input"
    # Short terminals show one plot at a time; tall ones show loss and perplexity together.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    def __init__(self, data_dir: Path | None = None) -> None:
        super().__init__()
        self.explicit_data_dir = data_dir
        self.session: EngineSession | None = None
        self.runs = RunWatch()
        self._polling = False

    def compose(self) -> ComposeResult:
        with TabbedContent(initial="prompt"):
            with TabPane("Prompt", id="prompt"):
                yield PromptPane(id="prompt-pane")
            with TabPane("Train", id="train"):
                yield TrainPane(self.runs.progress, id="train-pane")
            with TabPane("Stats", id="stats"):
                yield StatsPane(self.runs.progress, id="stats-pane")
            with TabPane("Runs", id="runs"):
                yield RunsPane(id="runs-pane")
            with TabPane("Inspect", id="inspect"):
                yield InspectPane(id="inspect-pane")
        yield StatusBar()
        yield Footer(compact=True)

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        # Messages quote paths and errors: never read them as markup.
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def pane(self, name: str) -> Widget:
        """The pane widget of a tab: "prompt", "train", "stats", "runs" or "inspect"."""
        return self.query_one(f"#{name}-pane")

    # -- the engine -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._load_engine()

    @work(thread=True, exit_on_error=False, group="engine")
    def _load_engine(self) -> None:
        try:
            session = load_engine(self.explicit_data_dir)
        except Exception as exc:  # a broken install or an unusable data dir: say so, keep the UI
            self.post_message(EngineFailed(describe_error(exc)))
        else:
            self.post_message(EngineReady(session))

    def on_engine_ready(self, message: EngineReady) -> None:
        if not self.is_running:
            return
        session = self.session = message.session
        self._apply_keymap(session.data_dir / "keymap.json")
        self.query_one(StatusBar).show("engine", f"engine ready · {session.device}")
        for pane in (self.query_one(PromptPane), self.query_one(TrainPane), self.query_one(RunsPane),
                     self.query_one(InspectPane)):
            pane.engine_ready(session)
        self._poll()
        self.set_interval(POLL_INTERVAL, self._poll)
        # torch and the engine are loaded: several hundred thousand objects that live as
        # long as the app. Frozen, they are left out of the garbage collector's full
        # passes, which otherwise stall the screen (and a generation) for a tenth of a
        # second now and then.
        gc.freeze()

    def on_engine_failed(self, message: EngineFailed) -> None:
        if not self.is_running:
            return
        self.query_one(StatusBar).show("engine", "engine failed to load")
        self.notify(message.error, title="Cannot load the engine", severity="error", timeout=30)

    def _apply_keymap(self, path: Path) -> None:
        """Rebind keys from `<data_dir>/keymap.json`: {"binding id": "key[,key...]"}."""
        if not path.exists():
            return
        try:
            keymap = read_json(path, limit=1 << 16)
            if not isinstance(keymap, dict) or not all(isinstance(v, str) for v in keymap.values()):
                raise ValueError("it must map binding ids to key names")
        except (OSError, ValueError) as exc:
            self.notify(f"Ignoring {path}: {exc}", title="Keymap", severity="warning")
            return
        self.set_keymap(keymap)

    # -- following the run folders ---------------------------------------------------------------

    def _poll(self) -> None:
        if not self._polling:
            self._polling = True
            self._poll_runs()

    @work(thread=True, exit_on_error=False, group="poll")
    def _poll_runs(self) -> None:
        from engine.runs.preparation import read_preparations

        try:
            summaries = self.session.store.list()  # reads what each metrics.jsonl gained, once
        except Exception as exc:  # a data dir gone away; try again at the next poll
            self.log.warning(f"polling the runs failed: {describe_error(exc)}")
            summaries = None
        self.post_message(RunsPolled(summaries, read_preparations(self.session.store.runs_dir)))

    def on_runs_polled(self, message: RunsPolled) -> None:
        self._polling = False
        if message.summaries is None or not self.is_running:  # nothing found, or shutting down
            return
        changed = self.runs.update(message.summaries)
        self.query_one(TrainPane).runs_updated(message.summaries, changed, message.preparing)
        self.query_one(StatsPane).runs_updated(message.summaries)
        self.query_one(RunsPane).runs_updated(message.summaries)

    # -- requests between panes ------------------------------------------------------------------

    def action_show_pane(self, pane: str) -> None:
        tabs = self.query_one(TabbedContent)
        if tabs.active == pane:
            self.pane(pane).focus_default()
            return
        # Let go of the focus first: a focused widget that gets hidden hands the focus to a
        # sibling, and a focused widget in another tab makes TabbedContent switch back to it.
        self.set_focus(None)
        tabs.active = pane

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if self.is_running:
            self.pane(event.pane.id).focus_default()

    def on_prompt_with_model(self, message: PromptWithModel) -> None:
        self.action_show_pane("prompt")
        self.query_one(PromptPane).load_model(message.choice)

    def on_show_run_stats(self, message: ShowRunStats) -> None:
        self.action_show_pane("stats")
        self.query_one(StatsPane).show_run(message.run)

    def on_resume_run(self, message: ResumeRun) -> None:
        self.action_show_pane("train")
        self.query_one(TrainPane).resume(message.run)

    def on_run_deleted(self, message: RunDeleted) -> None:
        self.runs.forget(message.run)
        self.query_one(TrainPane).forget(message.run)
        self.notify(f"Deleted run {message.run}.", title="Runs")
        self._poll()

    def on_model_status(self, message: ModelStatus) -> None:
        if self.is_running:  # not while shutting down: the widgets are going
            self.query_one(StatusBar).show("model", message.text)

    def on_training_status(self, message: TrainingStatus) -> None:
        if self.is_running:
            self.query_one(StatusBar).show("training", message.text)

    # -- quitting ---------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        train = self.query_one(TrainPane)
        running = train.running_runs()
        if not running:
            self.exit()
            return

        def answer(choice: str | None) -> None:
            if choice == "stop":
                train.stop_all()
            if choice is not None:
                self.exit()

        self.push_screen(QuitWhileTrainingScreen(running), answer)

    # -- the command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, then every action of the app and of each pane, with its key."""
        yield from super().get_system_commands(screen)
        if screen is not self.screen_stack[0]:
            return  # a dialog is open: its own keys apply
        for binding in bindings.APP:
            if binding.action != "quit":  # Textual lists Quit already
                yield self._command(binding, self, binding.description)
        targets = (("prompt", PromptPane), ("prompt", PromptInput), ("prompt", TranscriptView),
                   ("train", TrainPane), ("stats", StatsPane), ("runs", RunsPane), ("inspect", InspectPane))
        for pane, widget_type in targets:
            widget = self.query_one(widget_type)
            for binding in widget_type.BINDINGS:
                if binding.show and self._allowed(widget, binding):
                    yield self._command(binding, widget, f"{PANE_TITLES[pane]}: {binding.description}", pane)

    def _command(self, binding: Binding, target: Any, title: str, pane: str | None = None) -> SystemCommand:
        keys = self.get_key_display(binding)
        return SystemCommand(title, f"{binding.tooltip or binding.description} ({keys})",
                             partial(self._run_command, binding.action, target, pane))

    @staticmethod
    def _allowed(widget: Widget, binding: Binding) -> bool:
        name, _, _ = binding.action.partition("(")
        return bool(widget.check_action(name, ()))

    async def _run_command(self, action: str, target: Any, pane: str | None) -> None:
        if pane is not None:
            self.action_show_pane(pane)
        if isinstance(target, Widget) and target.focusable:
            target.focus()  # e.g. the token cursor only shows in a focused transcript
        await self.run_action(action, target)


def run_app(data_dir: Path | None = None) -> None:
    """Open the app on `data_dir` (None: $TUI_GPT_DATA_DIR or the user data dir)."""
    TuiGptApp(data_dir).run()
