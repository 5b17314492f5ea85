"""Data sources: every format reads the same documents, and every kind of bad input is one clear line."""

from __future__ import annotations

import gzip
import json
import lzma

import numpy as np
import pytest

from engine.data.sources import open_source
from engine.data.sources.base import TokenSource
from engine.errors import CorpusError

DOCS = [f"Document {i}: " + "the cat sat on the mat. " * (i % 5 + 1) for i in range(40)]


def _jsonl_bytes(docs=DOCS, field="text") -> bytes:
    return "\n".join(json.dumps({field: text, "id": i}) for i, text in enumerate(docs)).encode()


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gz":
        return gzip.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


def _write_parquet(path, docs=DOCS, column="text", row_group_size=7):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(len(docs))), column: docs}), path, row_group_size=row_group_size)


def _error(spec, *fragments, **options) -> str:
    with pytest.raises(CorpusError) as caught:
        source = open_source(spec, **options)
        if not isinstance(source, TokenSource):
            list(source.documents())
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_jsonl_records_are_documents(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_bytes())
    assert list(open_source(path).documents()) == DOCS


@pytest.mark.parametrize("kind", ["gz", "xz", "zst"])
def test_compressed_jsonl_reads_like_the_plain_file(tmp_path, kind):
    path = tmp_path / f"d.jsonl.{kind}"
    path.write_bytes(_compress(kind, _jsonl_bytes()))
    assert list(open_source(path).documents()) == DOCS


def test_parquet_rows_are_documents_across_row_groups(tmp_path):
    _write_parquet(tmp_path / "d.parquet")
    assert list(open_source(tmp_path / "d.parquet").documents()) == DOCS


def test_compressed_parquet_and_text_are_read(tmp_path):
    _write_parquet(tmp_path / "p.parquet")
    (tmp_path / "p.parquet.gz").write_bytes(gzip.compress((tmp_path / "p.parquet").read_bytes()))
    (tmp_path / "t.txt.xz").write_bytes(lzma.compress("one whole book".encode()))
    assert list(open_source(tmp_path / "p.parquet.gz").documents()) == DOCS
    assert list(open_source(tmp_path / "t.txt.xz").documents()) == ["one whole book"]


def test_format_is_recognised_from_content_without_an_extension(tmp_path):
    (tmp_path / "records").write_bytes(gzip.compress(_jsonl_bytes()))
    _write_parquet(tmp_path / "table")
    assert list(open_source(tmp_path / "records").documents()) == DOCS
    assert list(open_source(tmp_path / "table").documents()) == DOCS


def test_text_field_chooses_the_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_bytes(field="content"))
    assert list(open_source(path, text_field="content").documents()) == DOCS


def test_folder_of_mixed_shards_reads_in_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("first file")
    (tmp_path / "b" / "c.jsonl.gz").write_bytes(gzip.compress(_jsonl_bytes(DOCS[:3])))
    _write_parquet(tmp_path / "b" / "d.parquet", DOCS[3:5])
    (tmp_path / ".hidden.txt").write_text("left out")
    (tmp_path / "notes.csv").write_text("left out")
    assert list(open_source(tmp_path).documents()) == ["first file", *DOCS[:5]]


def test_folder_source_fingerprint_changes_when_a_shard_changes(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(_jsonl_bytes(DOCS[:3]))
    before = open_source(tmp_path).fingerprint()
    assert open_source(tmp_path).fingerprint() == before
    (tmp_path / "a.jsonl").write_bytes(_jsonl_bytes(DOCS[:4]))
    assert open_source(tmp_path).fingerprint() != before


def test_jsonl_line_that_is_not_json_is_skipped_and_named(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_bytes(DOCS[:2]) + b"\n{broken\n" + _jsonl_bytes(DOCS[2:3]))
    source = open_source(path)
    assert list(source.documents()) == DOCS[:3]
    assert source.warnings() == [f"skipped 1 line(s) of {path.absolute()} that are not JSON (line 3)"]


def test_record_without_the_text_field_names_the_fields_found(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(_jsonl_bytes(field="body"))
    _error(path, "line 1", "no 'text' field", "'body', 'id'", "--text-field")


def test_parquet_without_the_text_column_lists_the_columns(tmp_path):
    _write_parquet(tmp_path / "d.parquet", column="body")
    _error(tmp_path / "d.parquet", "no column 'text'", "columns: id, body")


@pytest.mark.parametrize("kind", ["gz", "xz", "zst"])
def test_truncated_compressed_file_is_an_error(tmp_path, kind):
    data = _compress(kind, _jsonl_bytes(DOCS * 20))
    path = tmp_path / f"d.jsonl.{kind}"
    path.write_bytes(data[: len(data) * 2 // 3])
    _error(path, str(path), "truncated")


def test_file_without_documents_is_an_error(tmp_path):
    from engine.data.training_data import load_training_data

    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"text": "  "}) for _ in range(3)))
    with pytest.raises(CorpusError, match="no documents in d.jsonl"):
        load_training_data(str(path), tmp_path / "cache")
    assert not list((tmp_path / "cache" / "prepared").glob("*/meta.json"))  # nothing looks complete


def _llmc_shard(tokens, magic=20240520, version=1, count=None) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, len(tokens) if count is None else count
    return header.tobytes() + np.asarray(tokens, dtype="<u2").tobytes()


def test_nanogpt_bin_brings_its_val_bin(tmp_path):
    np.arange(1000, dtype="<u2").tofile(tmp_path / "train.bin")
    np.arange(100, dtype="<u2").tofile(tmp_path / "val.bin")
    source = open_source(tmp_path / "train.bin")
    assert [len(a) for a in source.train] == [1000] and [len(a) for a in source.val] == [100]
    assert np.array_equal(source.train[0][:5], [0, 1, 2, 3, 4])


def test_llmc_shards_folder_splits_by_name(tmp_path):
    (tmp_path / "fw_train_000001.bin").write_bytes(_llmc_shard(range(50, 550)))
    (tmp_path / "fw_train_000002.bin").write_bytes(_llmc_shard(range(7, 307)))
    (tmp_path / "fw_val_000000.bin").write_bytes(_llmc_shard(range(100)))
    source = open_source(tmp_path)
    assert [len(a) for a in source.train] == [500, 300] and [len(a) for a in source.val] == [100]
    assert int(source.train[0][0]) == 50


def test_bin_with_odd_size_is_refused(tmp_path):
    (tmp_path / "train.bin").write_bytes(b"\x01\x00\x02")
    _error(tmp_path / "train.bin", "odd size")


def test_bin_with_ids_beyond_the_vocabulary_is_refused(tmp_path):
    np.array([1, 2, 60000, 3], dtype="<u2").tofile(tmp_path / "train.bin")
    _error(tmp_path / "train.bin", "token 2 is 60000", "vocabulary")


@pytest.mark.parametrize("magic, version, fragment", [(20240521, 1, "magic 20240521"), (20240520, 2, "version 2")])
def test_llmc_header_with_wrong_magic_or_version_is_refused(tmp_path, magic, version, fragment):
    (tmp_path / "s_train_000000.bin").write_bytes(_llmc_shard(range(10), magic=magic, version=version))
    _error(tmp_path / "s_train_000000.bin", fragment)


def test_llmc_shard_shorter_than_its_header_says_is_refused(tmp_path):
    (tmp_path / "s_train_000000.bin").write_bytes(_llmc_shard(range(10), count=20))
    _error(tmp_path / "s_train_000000.bin", "promises 20 tokens")


def test_missing_hub_dataset_says_what_was_looked_for(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    _error("hf:nobody/no-such-set:default:train", "dataset nobody/no-such-set", "split train",
           "not in the local Hugging Face cache", "download it first")


def test_saved_dataset_folder_uses_its_validation_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS[:30]}),
                                  "validation": datasets.Dataset.from_dict({"text": DOCS[30:]})})
    saved.save_to_disk(str(tmp_path / "saved"))
    source = open_source(tmp_path / "saved")
    assert list(source.documents()) == DOCS[:30]
    assert list(source.validation.documents()) == DOCS[30:]
