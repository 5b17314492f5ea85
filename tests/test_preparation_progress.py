"""A corpus being prepared before a run's first step: the event, its record beside the run folders, the fold."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.errors import CorpusError
from engine.runs.events import CorpusPreparing, RunStarted, StepDone, event_from_dict
from engine.runs.preparation import PreparationRecord, preparation_path, read_preparations
from engine.runs.progress import RunProgress
from engine.runs.store import RunStore
from engine.training import trainer
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run
from tui_gpt.cli.progress import TrainingProgress
from tui_gpt.formatting import describe_preparation


def _preparing(bytes_read: int = 120 * 2**20, **overrides) -> CorpusPreparing:
    values = dict(bytes_read=bytes_read, bytes_total=800 * 2**20, tokens=3_100_000, documents=12_000, seconds=4.8)
    values.update(overrides)
    return CorpusPreparing(**values)


def _write_jsonl(path: Path, n: int) -> Path:
    lines = [json.dumps({"text": f"Record {i} tells of " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(60))})
             for i in range(n)]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _config(corpus: Path, **overrides) -> TrainConfig:
    settings = dict(preset="gpt-nano", model_overrides={"context_length": 32}, corpus=str(corpus), batch_size=2,
                    max_steps=2, eval_freq=100, eval_iter=1, sample_tokens=2, seed=7, device="cpu")
    settings.update(overrides)
    return TrainConfig(**settings)


def test_a_preparation_event_reads_back_as_the_same_event():
    event = _preparing()
    assert event_from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_a_recorded_preparation_is_read_back_by_run_name_and_gone_once_closed(tmp_path):
    runs_dir = tmp_path / "runs"
    record = PreparationRecord(preparation_path(runs_dir, "big-run"))
    event = _preparing()
    record.write(event)
    assert read_preparations(runs_dir) == {"big-run": event}
    record.close()
    assert read_preparations(runs_dir) == {}
    assert not (runs_dir / ".preparing").exists()


def test_the_record_is_rewritten_at_most_once_per_interval(tmp_path):
    now = [0.0]
    record = PreparationRecord(preparation_path(tmp_path, "r"), min_interval=0.5, clock=lambda: now[0])
    record.write(_preparing(bytes_read=1))
    now[0] = 0.3
    record.write(_preparing(bytes_read=2))  # too soon: dropped
    assert read_preparations(tmp_path)["r"].bytes_read == 1
    now[0] = 0.6
    record.write(_preparing(bytes_read=3))
    assert read_preparations(tmp_path)["r"].bytes_read == 3


def test_damaged_or_foreign_files_beside_the_records_are_not_preparations(tmp_path):
    folder = tmp_path / ".preparing"
    folder.mkdir()
    (folder / "a.json").write_text("{not json", encoding="utf-8")
    (folder / "b.json").write_text(json.dumps({"event": "step"}), encoding="utf-8")
    (folder / "c.txt").write_text(json.dumps(_preparing().to_dict()), encoding="utf-8")
    assert read_preparations(tmp_path) == {}


def test_the_fold_shows_the_preparation_until_the_session_starts():
    progress = RunProgress()
    progress.add(_preparing(bytes_read=1))
    progress.add(_preparing(bytes_read=2))
    assert progress.preparing.bytes_read == 2
    progress.add(RunStarted(run="r", resumed=False, step=0, total_steps=10, n_params=1, device="cpu"))
    assert progress.preparing is None


def test_a_run_on_documents_reports_its_preparation_while_it_is_recorded_and_then_starts(tmp_path):
    corpus = _write_jsonl(tmp_path / "docs.jsonl", 400)
    data_dir = tmp_path / "data"
    runs_dir = RunStore(data_dir).runs_dir
    seen: list[tuple[object, dict]] = []
    outcome = train_run(_config(corpus), run_name="docs", data_dir=data_dir,
                        on_event=lambda event: seen.append((event, read_preparations(runs_dir))))
    assert outcome.state == "finished"
    kinds = [type(event) for event, _ in seen]
    first_started = kinds.index(RunStarted)
    assert CorpusPreparing in kinds[:first_started] and CorpusPreparing not in kinds[first_started:]
    last = [event for event, _ in seen if isinstance(event, CorpusPreparing)][-1]
    assert last.bytes_read == last.bytes_total == corpus.stat().st_size
    assert last.documents == 400 and last.tokens > 400
    # The first report is on file when it is emitted (later ones may be throttled); nothing is left after.
    assert "docs" in seen[0][1]
    assert read_preparations(runs_dir) == {}
    assert not (runs_dir / ".preparing").exists()


def test_a_preparation_that_fails_leaves_neither_a_run_nor_a_record(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"

    def failing(*args, on_progress=None, **kwargs):
        on_progress(_preparing())  # reported, then the source turns out to hold nothing usable
        raise CorpusError("no documents in docs.jsonl")

    monkeypatch.setattr(trainer, "load_training_data", failing)
    with pytest.raises(CorpusError):
        train_run(_config(tmp_path / "docs.jsonl"), run_name="bad", data_dir=data_dir)
    runs_dir = RunStore(data_dir).runs_dir
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []


def test_the_cli_draws_the_preparation_on_its_live_line_then_the_steps():
    stream = io.StringIO()
    progress = TrainingProgress(stream, live=True, min_redraw_interval=0.0)
    progress.on_event(_preparing())
    line = stream.getvalue()
    assert line.startswith("\r\x1b[Kpreparing the corpus | ") and "120/800 MB" in line and line.endswith("ETA 27s")
    progress.on_event(RunStarted(run="r", resumed=False, step=0, total_steps=4, n_params=1, device="cpu"))
    progress.on_event(StepDone(step=0, epoch=0, tokens_seen=64, loss=9.0, lr=1e-3, tokens_per_sec=1.0, step_time=1.0))
    assert stream.getvalue().rsplit("\r", 1)[-1].startswith("\x1b[Kstep 1/4")


def test_a_log_gets_a_preparation_line_at_most_every_ten_seconds():
    stream, now = io.StringIO(), [0.0]
    progress = TrainingProgress(stream, live=False, clock=lambda: now[0])
    for second in (0.0, 4.0, 9.0, 10.5):
        now[0] = second
        progress.on_event(_preparing(bytes_read=int(second * 2**20) + 1))
    assert stream.getvalue().count("preparing the corpus:") == 2
    assert stream.getvalue().splitlines()[0] == describe_preparation(_preparing(bytes_read=1))
