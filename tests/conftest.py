"""Fixtures shared by the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model.config import GPTConfig

# Test data lives in the repository (tests/data/NOTICE.md): the tests never read outside it.
TEST_DATA = Path(__file__).resolve().parent / "data"
VERDICT_PATH = TEST_DATA / "the-verdict.txt"


@pytest.fixture
def verdict_path() -> Path:
    return VERDICT_PATH


@pytest.fixture
def verdict_text() -> str:
    return VERDICT_PATH.read_text(encoding="utf-8")


@pytest.fixture
def tiny_config() -> GPTConfig:
    """A model small enough to train in seconds, with GPT-2's vocabulary."""
    return GPTConfig(context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)


@pytest.fixture(autouse=True)
def isolated_user_folders(tmp_path, monkeypatch) -> None:
    """Every test (and every process it starts) sees an empty data dir and Hugging Face cache of its own.

    Without this a test that lists models or runs (the app's model picker, `tui-gpt runs`) would read
    the GPT-2 weights and runs of whoever runs the suite, and pass or fail by what they hold.
    """
    monkeypatch.setenv("TUI_GPT_DATA_DIR", str(tmp_path / "tui-gpt-data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """The test's own tui-gpt data dir (already $TUI_GPT_DATA_DIR); nothing touches the real one."""
    return tmp_path / "tui-gpt-data"
