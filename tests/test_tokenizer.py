"""The bundled GPT-2 tokenizer: known ids, round trips, no network, damaged-file detection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import engine.model.tokenizer as tokenizer_module
from engine.errors import TuiGptError
from engine.model.tokenizer import END_OF_TEXT_ID, RANKS_FILE, get_tokenizer, text_to_token_ids, token_ids_to_text

REPO_ROOT = Path(__file__).resolve().parents[1]
GENUINE_RANKS = (REPO_ROOT / "engine" / "resources" / RANKS_FILE).read_bytes()
UNROUTABLE_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def fresh_tokenizer_cache():
    """Make get_tokenizer rebuild from the ranks file, and forget whatever this test built."""
    get_tokenizer.cache_clear()
    yield
    get_tokenizer.cache_clear()


def test_hello_i_am_encodes_to_the_book_ids():
    assert get_tokenizer().encode("Hello, I am") == [15496, 11, 314, 716]
    assert text_to_token_ids("Hello, I am", get_tokenizer()).tolist() == [[15496, 11, 314, 716]]


def test_vocabulary_is_gpt2_size():
    tokenizer = get_tokenizer()
    assert tokenizer.n_vocab == 50257
    assert tokenizer.eot_token == END_OF_TEXT_ID == 50256


def test_verdict_round_trips_with_the_book_token_count(verdict_text):
    tokenizer = get_tokenizer()
    ids = tokenizer.encode(verdict_text)
    assert len(ids) == 5145  # the count the book prints for the-verdict.txt
    assert tokenizer.decode(ids) == verdict_text
    assert token_ids_to_text(torch.tensor([ids]), tokenizer) == verdict_text


def test_end_of_text_is_allowed_and_encodes_to_50256():
    ids = text_to_token_ids("Hello<|endoftext|>world", get_tokenizer()).squeeze(0).tolist()
    assert ids[1] == END_OF_TEXT_ID and ids.count(END_OF_TEXT_ID) == 1
    assert token_ids_to_text(torch.tensor(ids), get_tokenizer()) == "Hello<|endoftext|>world"


def test_token_ids_to_text_accepts_a_plain_list():
    assert token_ids_to_text([15496, 11, 314, 716], get_tokenizer()) == "Hello, I am"


def test_unknown_words_split_into_subwords_and_round_trip():
    text = "Akwirw ier"
    ids = get_tokenizer().encode(text)
    assert len(ids) > 2
    assert get_tokenizer().decode(ids) == text


def test_tokenizer_works_in_a_fresh_process_without_network_or_tiktoken_cache(tmp_path):
    empty_cache = tmp_path / "tiktoken-cache"
    empty_cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"no_proxy", "all_proxy"}}
    env.update(
        TIKTOKEN_CACHE_DIR=str(empty_cache),
        http_proxy=UNROUTABLE_PROXY, https_proxy=UNROUTABLE_PROXY,
        HTTP_PROXY=UNROUTABLE_PROXY, HTTPS_PROXY=UNROUTABLE_PROXY,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    script = (
        "import tiktoken\n"
        "from engine.model.tokenizer import get_tokenizer\n"
        # tiktoken's own loader needs the network here: that shows the network is really cut.
        "try:\n"
        "    tiktoken.get_encoding('gpt2')\n"
        "except Exception:\n"
        "    print('tiktoken download failed')\n"
        "print(get_tokenizer().encode('Hello, I am'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["tiktoken download failed", "[15496, 11, 314, 716]"]
    assert list(empty_cache.iterdir()) == []


def test_tokenizer_builds_with_sockets_disabled(monkeypatch, fresh_tokenizer_cache):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert get_tokenizer().encode("Hello, I am") == [15496, 11, 314, 716]


def _serve_ranks_from(monkeypatch, folder: Path) -> None:
    monkeypatch.setattr(tokenizer_module, "resources", SimpleNamespace(files=lambda package: folder))


def test_damaged_ranks_file_is_detected(monkeypatch, tmp_path, fresh_tokenizer_cache):
    # Swap two ranks: still well-formed, but it would tokenize wrongly.
    lines = GENUINE_RANKS.splitlines()
    (a_token, a_rank), (b_token, b_rank) = lines[300].split(), lines[301].split()
    lines[300], lines[301] = a_token + b" " + b_rank, b_token + b" " + a_rank
    (tmp_path / RANKS_FILE).write_bytes(b"\n".join(lines) + b"\n")
    _serve_ranks_from(monkeypatch, tmp_path)
    with pytest.raises(TuiGptError, match=f"{RANKS_FILE} is damaged") as err:
        get_tokenizer()
    assert "\n" not in str(err.value)


def test_missing_ranks_file_is_reported_not_a_traceback(monkeypatch, tmp_path, fresh_tokenizer_cache):
    _serve_ranks_from(monkeypatch, tmp_path)
    with pytest.raises(TuiGptError, match=f"{RANKS_FILE} cannot be read"):
        get_tokenizer()


def test_genuine_ranks_file_served_the_same_way_loads(monkeypatch, tmp_path, fresh_tokenizer_cache):
    # The control for the two tests above: the substitution itself is not what fails.
    (tmp_path / RANKS_FILE).write_bytes(GENUINE_RANKS)
    _serve_ranks_from(monkeypatch, tmp_path)
    assert get_tokenizer().encode("Hello, I am") == [15496, 11, 314, 716]
