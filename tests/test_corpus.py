"""Loading training text: files, folders, the demo corpus, and every way they can be unusable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine.data import corpus as corpus_module
from engine.data.corpus import DEMO_NAME, FINGERPRINT_VERSION, load_corpus, require_tokens
from engine.errors import CorpusError, TuiGptError

SEP = "<|endoftext|>"


def _expect_error(path, *fragments: str) -> str:
    with pytest.raises(CorpusError) as caught:
        load_corpus(path)
    message = str(caught.value)
    assert isinstance(caught.value, TuiGptError) and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_text_file_loads_verbatim(verdict_path, verdict_text):
    corpus = load_corpus(verdict_path)
    assert corpus.text == verdict_text
    assert corpus.n_chars == len(verdict_text)
    assert corpus.name == "the-verdict.txt"
    assert corpus.path == verdict_path.absolute() and corpus.files == [verdict_path.absolute()]
    assert corpus.replaced_bytes == 0 and corpus.skipped_files == [] and corpus.warnings() == []
    digest = hashlib.sha256(FINGERPRINT_VERSION.encode() + b"\n" + verdict_text.encode()).hexdigest()
    assert corpus.fingerprint == digest
    assert "".join(corpus.iter_chunks()) == verdict_text


def test_utf8_bom_is_stripped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello \xe2\x82\xac")
    assert load_corpus(path).text == "Hello \u20ac"


def test_missing_path():
    assert _expect_error("/no/such/corpus.txt") == "corpus not found: /no/such/corpus.txt"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_path_that_is_neither_file_nor_folder(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    _expect_error(pipe, "neither a regular file nor a folder", str(pipe))


@pytest.mark.parametrize("content, why", [(b"", "empty"), (b" \n\t\n", "only whitespace"), (b"\xef\xbb\xbf", "empty")])
def test_empty_file(tmp_path, content, why):
    path = tmp_path / "blank.txt"
    path.write_bytes(content)
    _expect_error(path, str(path), why)


def test_binary_file(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary" * 10)
    _expect_error(path, str(path), "binary")


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    raw = b"caf\xe9 ok \xff\xfe, a cut euro \xe2\x82 and a real \xef\xbf\xbd"
    path = tmp_path / "latin1.txt"
    path.write_bytes(raw)
    corpus = load_corpus(path)
    assert corpus.text == raw.decode("utf-8", errors="replace")
    assert corpus.replaced_bytes == 5  # \xe9, \xff, \xfe and the two bytes of the cut euro sign
    assert corpus.replaced == {path: 5}
    assert corpus.warnings() == [f"5 invalid UTF-8 byte(s) in {path} were replaced with U+FFFD"]


def test_decoding_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "_READ_BYTES", 3)
    raw = "\ufeffgrüße €uro 😀 ".encode("utf-8") * 5 + b"\xe2\x82"
    path = tmp_path / "blocks.txt"
    path.write_bytes(raw)
    corpus = load_corpus(path)
    assert corpus.text == raw.decode("utf-8-sig", errors="replace")
    assert corpus.replaced_bytes == 2


def _write(root: Path, files: dict[str, bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def test_folder_joins_text_files_in_relative_path_order(tmp_path):
    _write(tmp_path / "books", {
        "b.md": b"bee",
        "a/z.txt": b"a-zed",
        "a/notes.TXT": b"loud",
        "c.rst": b"not a wanted extension",
        ".hidden.txt": b"hidden file",
        ".git/objects.txt": b"hidden folder",
        "a/b/deep.md": b"deep",
    })
    corpus = load_corpus(tmp_path / "books")
    assert corpus.text == SEP.join(["deep", "loud", "a-zed", "bee"])
    assert corpus.n_chars == len(corpus.text)
    assert corpus.name == "books"
    assert [p.relative_to(tmp_path / "books").as_posix() for p in corpus.files] == [
        "a/b/deep.md", "a/notes.TXT", "a/z.txt", "b.md"
    ]


def test_folder_with_chosen_extensions(tmp_path):
    _write(tmp_path, {"one.rst": b"restructured", "two.txt": b"plain"})
    assert load_corpus(tmp_path, extensions=("rst",)).text == "restructured"


def test_folder_without_text_files(tmp_path):
    _write(tmp_path, {"image.png": b"\x89PNG", ".secret.txt": b"hidden"})
    _expect_error(tmp_path, str(tmp_path), ".txt or .md")


def test_folder_skips_unusable_files_and_reports_them(tmp_path):
    _write(tmp_path, {"a.txt": b"first", "b.txt": b"\x00\x01\x02", "c.txt": b"  \n", "d.txt": b"last \xff"})
    corpus = load_corpus(tmp_path)
    assert corpus.text == f"first{SEP}last \ufffd"
    assert [s.path.name for s in corpus.skipped_files] == ["b.txt", "c.txt"]
    assert corpus.replaced_bytes == 1
    assert len(corpus.warnings()) == 3
    # skipped files leave no trace in the fingerprint
    clean = tmp_path / "clean"
    _write(clean, {"a.txt": b"first", "d.txt": b"last \xff"})
    assert load_corpus(clean).fingerprint == corpus.fingerprint


def test_folder_of_only_unusable_files(tmp_path):
    _write(tmp_path, {"a.txt": b"\x00binary", "b.md": b""})
    _expect_error(tmp_path, str(tmp_path), "all 2 file(s) were skipped")


def test_fingerprint_follows_the_content(tmp_path):
    _write(tmp_path, {"a.txt": b"one", "b.txt": b"two"})
    before = load_corpus(tmp_path).fingerprint
    assert load_corpus(tmp_path).fingerprint == before
    (tmp_path / "b.txt").write_bytes(b"too")
    assert load_corpus(tmp_path).fingerprint != before


def test_big_corpus_is_streamed_not_held(tmp_path, monkeypatch, verdict_text):
    _write(tmp_path, {"a.txt": verdict_text.encode(), "b.txt": "\ufeffsecond €\xff".encode() + b"\xff"})
    in_memory = load_corpus(tmp_path)
    monkeypatch.setattr(corpus_module, "IN_MEMORY_LIMIT_BYTES", 1000)
    monkeypatch.setattr(corpus_module, "_READ_BYTES", 4096)
    streamed = load_corpus(tmp_path)
    assert streamed._text is None
    chunks = list(streamed.iter_chunks())
    assert len(chunks) > 3
    assert "".join(chunks) == streamed.text == in_memory.text
    assert (streamed.fingerprint, streamed.n_chars, streamed.replaced_bytes) == (
        in_memory.fingerprint, in_memory.n_chars, in_memory.replaced_bytes
    )
    (tmp_path / "b.txt").write_bytes(b"changed")
    with pytest.raises(CorpusError, match="changed after the corpus was loaded"):
        list(streamed.iter_chunks())


def test_demo_corpus():
    corpus = load_corpus(None)
    assert corpus.name == DEMO_NAME and corpus.path is None and corpus.files == []
    assert corpus.n_chars == len(corpus.text) > 150_000
    assert corpus.text.count(SEP) > 50 and "lambda" in corpus.text
    assert load_corpus("demo").fingerprint == corpus.fingerprint


def test_require_tokens_names_both_numbers():
    require_tokens(257, 256)
    with pytest.raises(CorpusError) as caught:
        require_tokens(40, 256)
    assert str(caught.value) == "corpus too short: 40 tokens in the training split, need at least 257 (context_length + 1)"
    with pytest.raises(CorpusError, match=r"12 tokens in the validation split of notes\.txt, need at least 33"):
        require_tokens(12, 32, what="validation", corpus="notes.txt")


def test_demo_corpus_is_prose_not_layout_whitespace():
    text = load_corpus(None).text
    assert sum(not ch.isspace() for ch in text) / len(text) > 0.8
    assert "  " not in text and "\n\n" not in text  # no indentation or blank lines left to learn first
