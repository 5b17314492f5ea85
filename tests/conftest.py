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


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An isolated tui-gpt data dir; nothing in the tests touches the real one."""
    path = tmp_path / "tui-gpt-data"
    monkeypatch.setenv("TUI_GPT_DATA_DIR", str(path))
    return path
