"""GPT-2 weights through the command line: generate from them, train from them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.model.generation import generate
from engine.weights.gpt2 import load_gpt2
from engine.runs.store import RunStore
from engine.model.tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text
from tui_gpt.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A small randomly initialised GPT-2 saved as Hugging Face saves it."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
    folder = tmp_path_factory.mktemp("hf-gpt2")
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def test_generate_from_a_hugging_face_folder(hf_folder, data_dir, capsys):
    code = main(["--data-dir", str(data_dir), "generate", "--model", str(hf_folder), "--prompt", "Every effort",
                 "--max-new-tokens", "8"])
    assert code == 0
    tokenizer = get_tokenizer()
    expected = generate(load_gpt2(hf_folder), text_to_token_ids("Every effort", tokenizer), 8, 64)
    assert capsys.readouterr().out.strip() == token_ids_to_text(expected, tokenizer).strip()


def test_train_from_gpt2_weights_makes_a_new_run(hf_folder, data_dir, tmp_path, verdict_text, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(verdict_text[:6000], encoding="utf-8")
    code = main(["--data-dir", str(data_dir), "train", "--init-from", str(hf_folder), "--corpus", str(corpus),
                 "--run-name", "tuned", "--context-length", "32", "--batch-size", "2", "--max-steps", "2",
                 "--eval-freq", "1", "--eval-iter", "1", "--sample-tokens", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    model = RunStore(data_dir).open("tuned").read_config()["model"]
    # GPT-2's architecture, with the context cropped to what was asked for.
    assert (model["qkv_bias"], model["tie_embeddings"], model["context_length"]) == (True, True, 32)


def test_gpt2_by_name_offline_says_what_was_tried(tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1",
           "TUI_GPT_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-m", "tui_gpt", "generate", "--model", "gpt2", "--prompt", "Hi"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "empty-cache" in lines[0] and "Traceback" not in result.stderr
