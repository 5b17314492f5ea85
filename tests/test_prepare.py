"""Preparing a document source: shards identical for any number of threads, resumable after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.data import encoding
from engine.data import prepare as prepare_module
from engine.data.prepare import is_validation, prepare
from engine.data.sources import open_source
from engine.data.training_data import load_training_data
from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path, n: int) -> list[str]:
    docs = [f"Record {i} says: " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(i % 40 + 5)) for i in range(n)]
    path.write_text("\n".join(json.dumps({"text": doc}) for doc in docs))
    return docs


def _shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".bin"}


def test_prepared_tokens_are_the_documents_each_ended_by_endoftext(tmp_path):
    docs = _write_jsonl(tmp_path / "d.jsonl", 50)
    data = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "cache", val_fraction=0.2, seed=5)
    tokenizer = get_tokenizer()
    expected = {"train": [], "val": []}
    for index, doc in enumerate(docs):
        expected["val" if is_validation(index, 0.2, 5) else "train"] += tokenizer.encode_ordinary(doc) + [END_OF_TEXT_ID]
    assert list(data.train[: len(data.train)]) == expected["train"]
    assert list(data.val[: len(data.val)]) == expected["val"]
    assert 0 < data.meta["val_documents"] < data.meta["train_documents"]


def test_special_token_text_inside_a_document_is_tokenized_as_text(tmp_path):
    docs = ["A document that mentions <|endoftext|> in its text.", "Another, plain one.", "ünïcödé and 日本語"]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"text": doc}) for doc in docs))
    data = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "cache", val_fraction=0.0)
    tokenizer = get_tokenizer()
    assert list(data.train[: len(data.train)]) == [t for doc in docs for t in tokenizer.encode_ordinary(doc) + [END_OF_TEXT_ID]]
    assert list(data.train[: len(data.train)]).count(END_OF_TEXT_ID) == len(docs)


def test_validation_choice_of_a_document_does_not_move_when_documents_are_added():
    first = [is_validation(i, 0.1, 123) for i in range(1000)]
    assert first == [is_validation(i, 0.1, 123) for i in range(2000)][:1000]
    assert 50 < sum(first) < 150


def test_worker_processes_write_the_same_shards_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 2000)
    monkeypatch.setattr(prepare_module, "SHARD_CHARS", 9000)
    monkeypatch.setattr(encoding, "PROCESSES_FROM_BYTES", 0)  # workers even for this small source
    pools = []

    class CountedPool(encoding.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(encoding, "ProcessPoolExecutor", CountedPool)
    _write_jsonl(tmp_path / "d.jsonl", 300)
    one = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "one", workers=1)
    assert pools == []
    many = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "many", workers=4)
    assert len(pools) == 1 and pools[0]._max_workers == 4
    assert len(one.meta["shards"]) > 2
    assert _shard_bytes(one.folder) == _shard_bytes(many.folder)


def test_workers_that_die_leave_the_rest_to_this_process(tmp_path, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class BrokenPool(encoding.ProcessPoolExecutor):  # as when the OOM killer takes the workers
        def submit(self, fn, *args, **kwargs):
            future = Future()
            future.set_exception(BrokenProcessPool("a worker died"))
            return future

    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 2000)
    monkeypatch.setattr(encoding, "PROCESSES_FROM_BYTES", 0)
    _write_jsonl(tmp_path / "d.jsonl", 100)
    one = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "one", workers=1)
    monkeypatch.setattr(encoding, "ProcessPoolExecutor", BrokenPool)
    broken = prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "broken", workers=2)
    assert _shard_bytes(one.folder) == _shard_bytes(broken.folder)


def test_second_prepare_reuses_the_shards(tmp_path):
    _write_jsonl(tmp_path / "d.jsonl", 30)
    assert prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "cache").built
    assert not prepare(open_source(tmp_path / "d.jsonl"), tmp_path / "cache").built


_SLOW_PREPARE = """
import sys, time
from pathlib import Path
from engine.data import prepare as p
from engine.data.sources import open_source
p.BATCH_CHARS, p.SHARD_CHARS = 2000, 6000
def slow(progress):
    time.sleep(float(sys.argv[3]))
p.prepare(open_source(Path(sys.argv[1])), Path(sys.argv[2]), workers=2, on_progress=slow)
"""


def test_kill_9_mid_way_leaves_no_complete_looking_shard_and_a_rerun_finishes_identically(tmp_path):
    _write_jsonl(tmp_path / "d.jsonl", 400)
    clean = prepare_in_subprocess(tmp_path / "d.jsonl", tmp_path / "clean", delay=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", _SLOW_PREPARE, str(tmp_path / "d.jsonl"),
                                str(tmp_path / "killed"), "0.05"], env=env)
    root = tmp_path / "killed" / "prepared"
    deadline = time.monotonic() + 120
    while not list(root.glob("*/shard-000001.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (folder,) = root.iterdir()
    assert not (folder / "meta.json").exists()
    finished = sorted(p.name for p in folder.glob("shard-*.json"))
    assert finished and "shard-000001.json" in finished
    for record in finished:  # every shard that says it is complete is
        shard = json.loads((folder / record).read_text())
        assert (folder / f"{shard['name']}.train.bin").stat().st_size == 2 * shard["train_tokens"]
    resumed = prepare_in_subprocess(tmp_path / "d.jsonl", tmp_path / "killed", delay=0)
    assert resumed == clean


def prepare_in_subprocess(source: Path, cache: Path, delay: float) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _SLOW_PREPARE, str(source), str(cache), str(delay)], env=env, check=True)
    (folder,) = (cache / "prepared").iterdir()
    assert (folder / "meta.json").exists()
    return _shard_bytes(folder)


def test_bad_record_leaves_nothing_that_looks_complete(tmp_path):
    path = tmp_path / "d.jsonl"
    _write_jsonl(path, 20)
    path.write_text(path.read_text() + '\n{"title": "no text here"}\n')
    with pytest.raises(Exception, match="line 21 has no 'text' field"):
        load_training_data(str(path), tmp_path / "cache")
    (folder,) = (tmp_path / "cache" / "prepared").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["source.json"]


def test_token_files_are_used_in_place(tmp_path):
    np.arange(5000, dtype="<u2").tofile(tmp_path / "train.bin")
    np.arange(600, dtype="<u2").tofile(tmp_path / "val.bin")
    data = load_training_data(str(tmp_path / "train.bin"), tmp_path / "cache")
    assert (len(data.train), len(data.val)) == (5000, 600) and data.cache_path is None
    assert not (tmp_path / "cache").exists()


def test_separate_validation_source_validates_everything(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", 20)
    val_docs = _write_jsonl(tmp_path / "val.jsonl", 5)
    data = load_training_data(str(tmp_path / "train.jsonl"), tmp_path / "cache", val_corpus=str(tmp_path / "val.jsonl"))
    tokenizer = get_tokenizer()
    assert list(data.val) == [t for doc in val_docs for t in tokenizer.encode_ordinary(doc) + [END_OF_TEXT_ID]]
    meta = json.loads((data.cache_path / "meta.json").read_text())
    assert (meta["train_documents"], meta["val_documents"]) == (20, 5)


def test_a_single_text_file_keeps_the_books_character_split(verdict_path, verdict_text, tmp_path):
    data = load_training_data(str(verdict_path), tmp_path / "cache")
    tokenizer = get_tokenizer()
    cut = int(0.9 * len(verdict_text))
    assert list(data.train) == tokenizer.encode(verdict_text[:cut], allowed_special={"<|endoftext|>"})


def test_data_commands_prepare_list_show_delete(tmp_path, capsys):
    from tui_gpt.cli.main import main

    _write_jsonl(tmp_path / "d.jsonl", 40)
    data_dir = ["--data-dir", str(tmp_path / "data")]
    assert main(["data", "prepare", str(tmp_path / "d.jsonl"), *data_dir]) == 0
    assert main(["data", "list", *data_dir]) == 0
    listing = capsys.readouterr().out
    assert "d.jsonl" in listing and "ready" in listing
    assert main(["data", "show", "d.jsonl", *data_dir]) == 0
    shown = capsys.readouterr().out
    assert "documents:   40 (" in shown and "bytes/token" in shown and "sample:      Record 0 says" in shown
    assert main(["data", "delete", "d.jsonl", "--yes", *data_dir]) == 0
    assert main(["data", "show", "d.jsonl", *data_dir]) == 2
    assert "no prepared data set matches 'd.jsonl'" in capsys.readouterr().err


def test_a_run_trains_on_jsonl_and_reports_bits_per_byte(tmp_path):
    from engine.runs.events import EvalDone, MetricsReader
    from engine.runs.store import RunStore
    from engine.training.settings import TrainConfig
    from engine.training.trainer import train_run

    _write_jsonl(tmp_path / "d.jsonl", 300)
    config = TrainConfig(preset="gpt-nano", model_overrides={"context_length": 32}, corpus=str(tmp_path / "d.jsonl"),
                         batch_size=2, max_steps=2, eval_freq=1, eval_iter=1, sample_tokens=0, device="cpu")
    assert train_run(config, run_name="jsonl", data_dir=tmp_path / "data").state == "finished"
    run = RunStore(tmp_path / "data").open("jsonl")
    evaluations = [e for e in MetricsReader(run.metrics_path).read_new() if isinstance(e, EvalDone)]
    assert evaluations and all(2.0 < e.val_bpb < 5.0 and 2.0 < e.train_bpb < 5.0 for e in evaluations)
    assert run.read_config()["corpus"]["name"] == "d.jsonl"
