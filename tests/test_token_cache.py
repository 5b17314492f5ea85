"""Tokenizing a corpus once into memory-mapped token files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.data import corpus as corpus_module
from engine.data import token_cache
from engine.data.corpus import load_corpus
from engine.data.windows import split_train_val
from engine.errors import CorpusError
from engine.data.token_cache import _token_safe_cut, load_token_splits
from engine.model.tokenizer import END_OF_TEXT, get_tokenizer


def _book_tokens(text: str, train_ratio: float = 0.9) -> tuple[list[int], list[int]]:
    tokenizer = get_tokenizer()
    return tuple(tokenizer.encode(part, allowed_special={END_OF_TEXT}) for part in split_train_val(text, train_ratio))


def _assert_book_tokens(splits, text: str, train_ratio: float = 0.9) -> None:
    train, val = _book_tokens(text, train_ratio)
    assert splits.train.dtype == splits.val.dtype == np.uint16
    assert splits.train.tolist() == train
    assert splits.val.tolist() == val


def test_round_trip_equals_direct_tokenization(verdict_path, verdict_text, tmp_path):
    splits = load_token_splits(load_corpus(verdict_path), tmp_path)
    assert splits.built
    assert isinstance(splits.train, np.memmap)
    _assert_book_tokens(splits, verdict_text)
    assert not splits.train.flags.writeable
    with pytest.raises(ValueError):
        splits.train[0] = 1
    meta = json.loads((splits.cache_path / "meta.json").read_text())
    assert (meta["train_tokens"], meta["val_tokens"]) == (len(splits.train), len(splits.val))
    assert sorted(p.name for p in splits.cache_path.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_second_load_reuses_the_cache(verdict_path, tmp_path):
    corpus = load_corpus(verdict_path)
    first = load_token_splits(corpus, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.cache_path.iterdir()}
    second = load_token_splits(corpus, tmp_path)
    assert not second.built
    assert second.cache_path == first.cache_path
    assert {p.name: p.stat().st_mtime_ns for p in second.cache_path.iterdir()} == stamps
    assert np.array_equal(first.train, second.train) and np.array_equal(first.val, second.val)


def test_other_ratio_gets_its_own_cache(verdict_path, verdict_text, tmp_path):
    corpus = load_corpus(verdict_path)
    default = load_token_splits(corpus, tmp_path)
    other = load_token_splits(corpus, tmp_path, train_ratio=0.5)
    assert other.built and other.cache_path != default.cache_path
    _assert_book_tokens(other, verdict_text, 0.5)


@pytest.mark.parametrize("damage", ["truncate train", "drop meta", "garble meta", "other fingerprint"])
def test_damaged_cache_is_rebuilt(verdict_path, verdict_text, tmp_path, damage):
    corpus = load_corpus(verdict_path)
    folder = load_token_splits(corpus, tmp_path).cache_path
    if damage == "truncate train":
        data = (folder / "train.bin").read_bytes()
        (folder / "train.bin").write_bytes(data[: len(data) // 2])
    elif damage == "drop meta":
        (folder / "meta.json").unlink()
    elif damage == "garble meta":
        (folder / "meta.json").write_text("{not json")
    else:
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "fingerprint": "0" * 64}))
    rebuilt = load_token_splits(corpus, tmp_path)
    assert rebuilt.built
    _assert_book_tokens(rebuilt, verdict_text)
    assert not load_token_splits(corpus, tmp_path).built


def test_piecewise_tokenization_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "ENCODE_CHARS", 700)
    demo = load_corpus(None)  # code, tables, blank lines and <|endoftext|> separators
    calls = []
    splits = load_token_splits(demo, tmp_path, on_progress=lambda done, total: calls.append((done, total)))
    _assert_book_tokens(splits, demo.text)
    assert len(calls) > demo.n_chars // 700
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (demo.n_chars, demo.n_chars)


def test_streamed_corpus_tokenizes_like_the_whole_text(tmp_path, monkeypatch, verdict_text):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text(verdict_text[:9000], encoding="utf-8")
    (books / "b.txt").write_text(verdict_text[9000:] + "\r\n\r\n  trailing  ", encoding="utf-8")
    monkeypatch.setattr(corpus_module, "IN_MEMORY_LIMIT_BYTES", 100)
    monkeypatch.setattr(corpus_module, "_READ_BYTES", 1000)
    monkeypatch.setattr(token_cache, "ENCODE_CHARS", 1500)
    corpus = load_corpus(books)
    splits = load_token_splits(corpus, tmp_path / "cache")
    _assert_book_tokens(splits, corpus.text)


def test_split_without_tokens_is_an_empty_array(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("x")
    splits = load_token_splits(load_corpus(path), tmp_path / "cache")  # int(0.9 * 1) == 0 training chars
    assert splits.train.shape == (0,) and splits.train.dtype == np.uint16
    assert splits.val.tolist() == [87]
    assert not load_token_splits(load_corpus(path), tmp_path / "cache").built


@pytest.mark.parametrize(
    "text, cut",
    [("one two\nthree", 7), ("one two  \n\nthree", 7), ("abc def", 3), ("\n\n  abc", 0), ("nowhitespace", 0)],
)
def test_safe_cut_is_before_a_whitespace_run(text, cut):
    assert _token_safe_cut(text) == cut
    if cut:
        tokenizer = get_tokenizer()
        assert tokenizer.encode(text[:cut]) + tokenizer.encode(text[cut:]) == tokenizer.encode(text)


def test_interrupted_build_leaves_nothing_trusted(verdict_path, verdict_text, tmp_path, monkeypatch):
    corpus = load_corpus(verdict_path)
    folder = load_token_splits(corpus, tmp_path).cache_path
    (folder / "meta.json").unlink()  # force a rebuild, then fail it part-way

    def crash(self, text):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(token_cache._SplitEncoder, "_encode", crash)
        with pytest.raises(KeyboardInterrupt):
            load_token_splits(corpus, tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["train.bin", "val.bin"]  # no meta, no temporary files
    rebuilt = load_token_splits(corpus, tmp_path)
    assert rebuilt.built
    _assert_book_tokens(rebuilt, verdict_text)


def test_unwritable_cache_folder_is_a_one_line_error(verdict_path, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(CorpusError, match="cannot write the token cache in") as caught:
        load_token_splits(load_corpus(verdict_path), blocker)
    assert "\n" not in str(caught.value)
