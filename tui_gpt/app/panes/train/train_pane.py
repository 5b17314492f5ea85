"""The train pane: set up a run, start, stop and resume it, and follow it as it trains.

Runs are `tui-gpt train` processes (see training_process); this pane learns
how they go only from the run folders, as polled by the app, so it follows
runs it did not start (headless, torchrun, an earlier session) the same way.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from engine.runs.exit_codes import EXIT_BAD_INPUT, EXIT_FINISHED, EXIT_STOPPED
from tui_gpt.app import bindings
from tui_gpt.app.services.engine_session import EngineSession
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.services.prepared_corpora import prepared_corpora
from tui_gpt.app.messages import TrainingStatus
from tui_gpt.app.services.training_process import (
    CannotStop,
    TrainingProcess,
    launch,
    request_stop,
    resume_command,
    train_command,
)
from tui_gpt.app.panes.train.run_progress import RunProgressPanel
from tui_gpt.app.panes.train.sample_timeline import SampleTimeline
from tui_gpt.app.panes.train.train_form import FormError, TrainForm
from tui_gpt.formatting import preparation_fraction

if TYPE_CHECKING:
    from engine.runs.events import CorpusPreparing
    from engine.runs.progress import RunProgress
    from engine.runs.summary import RunSummary

_RESUMABLE = ("stopped", "failed", "finished")


class TrainPane(Horizontal):
    BINDINGS = bindings.TRAIN_PANE

    def __init__(self, progress: dict[str, RunProgress], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.progress = progress  # by run name; shared with the app, which updates it
        self.session: EngineSession | None = None
        self.current_run: str | None = None
        self._summaries: dict[str, RunSummary] = {}
        self._processes: dict[str, TrainingProcess] = {}  # runs this session started or resumed
        self._launched: set[str] = set()
        self._start_errors: dict[str, str] = {}  # runs whose command exited before training
        self._preparing: dict[str, CorpusPreparing] = {}  # runs whose corpus is being prepared, by name
        self._looked_for_running = False
        self._keys: tuple = ()

    def compose(self) -> ComposeResult:
        yield TrainForm(id="train-form")
        with Vertical(id="train-right"):
            yield RunProgressPanel(id="run-progress")
            yield SampleTimeline(id="sample-timeline")

    def focus_default(self) -> None:
        self.query_one("#train-corpus").focus()

    def engine_ready(self, session: EngineSession) -> None:
        self.session = session
        self.query_one(TrainForm).engine_ready(session.presets, session.recipes, session.train_defaults,
                                               session.train_settings)
        self._refresh_keys()
        self._offer_prepared()

    @work(thread=True, exclusive=True, exit_on_error=False, group="prepared-corpora")
    def _offer_prepared(self) -> None:
        """Look for prepared data sets (again: a run may have prepared one) and offer them in the form."""
        try:
            corpora = prepared_corpora(self.session.store.cache_dir)
        except OSError as exc:  # an unreadable cache: the form still takes any source
            self.log.warning(f"listing the prepared data sets failed: {describe_error(exc)}")
            return
        self.app.call_from_thread(self.query_one(TrainForm).offer_prepared, corpora)

    # -- the state of runs -----------------------------------------------------------------------

    def state_of(self, name: str) -> str:
        process = self._processes.get(name)
        summary = self._summaries.get(name)
        if summary is not None and summary.state == "running":
            return "running"
        if process is not None and process.exit_code() is None:
            return "starting"
        if name in self._start_errors:
            return "did not start"
        return summary.state if summary is not None else "new"

    def is_active(self, name: str | None) -> bool:
        return name is not None and self.state_of(name) in ("running", "starting")

    def runs_updated(self, summaries: list[RunSummary], changed: set[str],
                     preparing: dict[str, CorpusPreparing] | None = None) -> None:
        """Called by the app after each poll of the run folders (and of the runs being prepared)."""
        previous = {name: self.state_of(name) for name in self._summaries}
        self._summaries = {summary.name: summary for summary in summaries}
        preparing = preparing or {}
        current_preparation_moved = preparing.get(self.current_run) != self._preparing.get(self.current_run)
        if set(self._preparing) - set(preparing):  # a preparation ended: its data set may now be offered
            self._offer_prepared()
        self._preparing = preparing
        self._reap_processes()
        if not self._looked_for_running:
            self._looked_for_running = True
            running = [s.name for s in summaries if s.state == "running"]  # newest first
            if self.current_run is None and running:
                self.follow(running[0])
                self.notify(f"Run {running[0]} is training; following it.", title="Training")
        for name in changed:
            progress = self.progress.get(name)
            ended = progress.ended if progress else None
            if ended is not None and name not in self._launched and previous.get(name) == "running":
                self.notify(f"Run {name} {ended.state} at step {ended.step}. {ended.message}".strip(),
                            title="Training", severity="error" if ended.state == "failed" else "information")
        current = self.current_run
        if current is not None and (current in changed or current_preparation_moved
                                    or previous.get(current) != self.state_of(current)):
            self._show_current()
        self._refresh_keys()

    def _reap_processes(self) -> None:
        for name, process in list(self._processes.items()):
            code = process.exit_code()
            if code is None:
                continue
            del self._processes[name]
            self._report_exit(name, code, process.error_line())
            self._offer_prepared()  # the run may have prepared a data set

    def _report_exit(self, name: str, code: int, error: str) -> None:
        if code == EXIT_FINISHED:
            self.notify(f"Run {name} finished.", title="Training")
        elif code == EXIT_STOPPED:
            self.notify(f"Run {name} stopped; a checkpoint was saved. Resume it any time.", title="Training")
        elif code == EXIT_BAD_INPUT:
            self._start_errors[name] = error or "bad input"
            self.notify(error or f"Run {name} did not start (exit code {code}).", title="Training",
                        severity="error", timeout=12)
        else:
            self.notify(f"Run {name} failed: {error or f'exit code {code}'}", title="Training", severity="error",
                        timeout=12)
        if name == self.current_run:
            self._show_current()

    def follow(self, name: str) -> None:
        self.current_run = name
        self._show_current()
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Refresh the footer only when a key came or went: each refresh redraws it."""
        keys = tuple(self.check_action(action, ()) for action in ("start", "stop", "resume"))
        if keys != self._keys:
            self._keys = keys
            self.refresh_bindings()

    def forget(self, name: str) -> None:
        """The run was deleted."""
        self._summaries.pop(name, None)
        if self.current_run == name:
            self.current_run = None
            self.query_one(RunProgressPanel).show_nothing()
            self.query_one(SampleTimeline).show_samples(None, [], [])
            self.post_message(TrainingStatus(""))

    def _show_current(self) -> None:
        name = self.current_run
        if name is None:
            return
        state = self.state_of(name)
        progress = self.progress.get(name)
        preparing = self._preparing.get(name) if state == "starting" else None
        if preparing is not None:  # the run folder's events do not tell this yet: add it to a copy
            from engine.runs.progress import RunProgress

            progress = progress.copy() if progress else RunProgress()
            progress.add(preparing)
        panel = self.query_one(RunProgressPanel)
        if state == "did not start":
            panel.update(f"{name} · did not start\n{self._start_errors[name]}")
        else:
            panel.show_run(name, state, progress, self._summaries.get(name))
        self.query_one(SampleTimeline).show_samples(name, progress.samples if progress else [],
                                                    progress.evals if progress else [])
        if preparing is not None:
            steps = f" · preparing the corpus {preparation_fraction(preparing):.0%}"
        else:
            steps = f" · step {progress.steps_done}/{progress.total_steps}" if progress and progress.total_steps else ""
        self.post_message(TrainingStatus(f"{name}: {state}{steps}"))

    # -- actions --------------------------------------------------------------------------------

    def action_start(self) -> None:
        try:
            request = self.query_one(TrainForm).read()
            request = replace(request, run=self._run_name(request.run))
        except (FormError, ValueError) as exc:  # engine errors (a bad run name) are ValueErrors too
            self.notify(str(exc), title="Cannot start", severity="error")
            return
        self._launch(request.run, train_command(self.session.data_dir, request), "Starting")

    def _run_name(self, typed: str) -> str:
        from engine.runs.store import validate_run_name

        store = self.session.store
        if not typed:
            return store.new_run_name(self.query_one(TrainForm).run_name_prefix())
        if store.exists(validate_run_name(typed)):
            raise FormError(f"a run named {typed} already exists: resume it, or choose another name")
        return typed

    def resume(self, name: str) -> None:
        if self.is_active(name):
            self.follow(name)
            self.notify(f"Run {name} is already training.", title="Training")
            return
        self._launch(name, resume_command(self.session.data_dir, name), "Resuming")

    def _launch(self, name: str, command: list[str], verb: str) -> None:
        try:
            process = launch(self.session.data_dir, name, command)
        except OSError as exc:
            self.notify(f"Cannot start training: {describe_error(exc)}", title="Training", severity="error")
            return
        self._processes[name] = process
        self._launched.add(name)
        self._start_errors.pop(name, None)
        self.follow(name)
        self.notify(f"{verb} run {name}…", title="Training")

    def action_stop(self) -> None:
        name = self.current_run
        holder = self.session.store.open(name).lock_holder() if self.session.store.exists(name) else None
        launched = self._processes.get(name)
        try:
            if launched and (holder is None or holder.pid in (-1, launched.pid)):
                stopping = launched.request_stop()  # this app's own child (perhaps not training yet)
            else:
                stopping = holder is not None and request_stop(holder)
        except CannotStop as exc:
            self.notify(f"Cannot stop run {name}: {exc}", title="Training", severity="error")
            return
        except OSError as exc:
            self.notify(f"Cannot stop run {name}: {describe_error(exc)}", title="Training", severity="error")
            return
        if stopping:
            self.notify(f"Stopping run {name} after its current step; a checkpoint is saved.", title="Training")
        else:
            self.notify(f"Run {name} is not training.", title="Training")

    def action_resume(self) -> None:
        self.resume(self.current_run)

    def stop_all(self) -> list[str]:
        """Ask every run that is training to stop (on quit); the names asked."""
        asked = []
        for name, summary in self._summaries.items():
            if summary.state != "running":
                continue
            try:
                holder = self.session.store.open(name).lock_holder()
                if holder and request_stop(holder):
                    asked.append(name)
            except (OSError, RuntimeError, CannotStop):  # deleted meanwhile (RunError), or not ours to signal
                continue
        return asked

    def running_runs(self) -> list[str]:
        return [name for name in {*self._summaries, *self._processes} if self.is_active(name)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return self.session is not None
        if action == "stop":
            return self.is_active(self.current_run)
        if action == "resume":
            return (self.session is not None and self.current_run is not None
                    and self.state_of(self.current_run) in _RESUMABLE)
        return True
