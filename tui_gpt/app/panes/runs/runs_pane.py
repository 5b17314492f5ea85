"""The runs pane: every run with its state, best validation loss, steps and size.

From here a run is opened in the stats pane, loaded for prompting, resumed
in the train pane, exported as a Hugging Face folder, or deleted after a confirmation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from tui_gpt.app import bindings
from tui_gpt.app.services.failures import describe_error
from tui_gpt.app.messages import PromptWithModel, ResumeRun, RunDeleted, ShowRunStats
from tui_gpt.app.services.model_catalog import ModelChoice
from tui_gpt.app.screens.confirm import ConfirmScreen
from tui_gpt.app.widgets.steady_update import update_steady
from tui_gpt.formatting import format_number, human_size

if TYPE_CHECKING:
    from engine.runs.summary import RunSummary
    from tui_gpt.app.services.engine_session import EngineSession

_RUN_ACTIONS = ("stats", "prompt", "resume", "delete", "export")
_COLUMNS = (("Run", "name"), ("State", "state"), ("Steps", "steps"), ("Best val", "loss"), ("Val ppl", "ppl"),
            ("Size", "size"), ("Updated", "updated"))


def run_row(summary: RunSummary) -> tuple[str, ...]:
    return (
        summary.name,
        summary.state,
        f"{summary.steps:,}",
        format_number(summary.best_val_loss, ".3f"),
        format_number(summary.best_val_ppl, ",.1f"),
        human_size(summary.size_bytes),
        f"{summary.updated:%m-%d %H:%M}",
    )


class RunsPane(Vertical):
    BINDINGS = bindings.RUNS_PANE

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session: EngineSession | None = None
        self._summaries: dict[str, RunSummary] = {}
        self._rows: list[tuple[str, ...]] = []
        self._keys: tuple = ()

    def compose(self) -> ComposeResult:
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        for label, key in _COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("Loading the engine…", id="runs-hint")

    def focus_default(self) -> None:
        self.query_one(DataTable).focus()

    def engine_ready(self, session: EngineSession) -> None:
        self.session = session

    def runs_updated(self, summaries: list[RunSummary]) -> None:
        self._summaries = {summary.name: summary for summary in summaries}
        rows = [run_row(summary) for summary in summaries]
        hint = self.query_one("#runs-hint", Static)
        update_steady(hint, f"{len(rows)} run{'s' * (len(rows) != 1)}. Enter opens a run's plots." if rows else
                    "No runs yet: start one in the Train pane (or with `tui-gpt train`).")
        if rows == self._rows:
            return
        table = self.query_one(DataTable)
        keep = self.selected_run
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])
        self._rows = rows
        if keep in self._summaries:
            table.move_cursor(row=table.get_row_index(keep))
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Refresh the footer only when a key came or went: each refresh redraws it."""
        keys = tuple(self.check_action(action, ()) for action in _RUN_ACTIONS)
        if keys != self._keys:
            self._keys = keys
            self.refresh_bindings()

    @property
    def selected_run(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_stats()

    def on_data_table_row_highlighted(self) -> None:
        self._refresh_keys()

    def action_stats(self) -> None:
        self.post_message(ShowRunStats(self.selected_run))

    def action_prompt(self) -> None:
        summary = self._summaries[self.selected_run]
        which = "best" if summary.best_val_loss is not None else "latest"
        self.post_message(PromptWithModel(ModelChoice("run", summary.name, which)))

    def action_resume(self) -> None:
        self.post_message(ResumeRun(self.selected_run))

    def action_delete(self) -> None:
        summary = self._summaries[self.selected_run]

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self._delete(summary.name)

        self.app.push_screen(
            ConfirmScreen(f"Delete run {summary.name}?",
                          f"Its checkpoints, metrics and logs ({human_size(summary.size_bytes)}) are removed.",
                          yes_label="Delete"),
            delete,
        )

    @work(thread=True, exit_on_error=False, group="delete-run")
    def _delete(self, name: str) -> None:
        try:
            self.session.store.delete(name)
        except Exception as exc:  # in use by a training process, permissions...
            self.notify(f"Cannot delete run {name}: {describe_error(exc)}", title="Runs", severity="error")
            return
        self.post_message(RunDeleted(name))

    def action_export(self) -> None:
        summary = self._summaries[self.selected_run]
        self._export(summary.name, best=summary.best_val_loss is not None)

    @work(thread=True, exit_on_error=False, group="export-run")
    def _export(self, name: str, best: bool) -> None:
        from engine.runs.checkpoints import best_checkpoint, latest_checkpoint
        from engine.weights.export import ExportRequest, load_run_for_export

        try:
            store = self.session.store
            run = store.open(name)
            info = (best_checkpoint if best else latest_checkpoint)(run.checkpoints_dir)
            out = store.data_dir / "exports" / (f"{name}-step-{info.step}" if info else name)
            if out.exists():
                self.notify(f"Already exported: {out}", title="Export")
                return
            request = ExportRequest("hf", out)
            request.check()
            self.notify(f"Exporting run {name}…", title="Export")
            model, card = load_run_for_export(run, best)
            request.write(model, card)
        except Exception as exc:  # no checkpoint, a full disk...
            self.notify(f"Cannot export run {name}: {describe_error(exc)}", title="Export", severity="error")
            return
        self.notify(f"Exported run {name} to {out}", title="Export", timeout=10)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        summary = self._summaries.get(self.selected_run or "")
        if action not in _RUN_ACTIONS:
            return True
        if summary is None:
            return None  # shown, but dimmed: there is no run to act on
        if action in ("prompt", "export"):
            return summary.steps > 0 or None
        if action in ("resume", "delete"):
            return summary.state != "running" or None
        return True
