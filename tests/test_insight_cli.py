"""`tui-gpt score`, `lens`, `attention` and `compare`: JSON output, tables and one-line errors."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from engine.insight.scoring import score_text
from engine.model.config import PRESETS
from engine.model.gpt import GPTModel
from engine.runs.checkpoints import list_checkpoints
from engine.runs.store import RunStore
from engine.training.settings import TrainConfig
from engine.training.trainer import train_run
from tui_gpt.cli.main import main

TEXT = "It had always been his fate to have women say such things of him: the fact should be set down in extenuation."
FRESH = ["--model", "gpt-nano", "--seed", "3"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _json(capsys, args: list[str]):
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_score_json_has_every_token_and_the_engines_totals(data_dir, text_file, capsys):
    data = _json(capsys, ["score", str(text_file), *FRESH, "--json", "--top-k", "2"])
    torch.manual_seed(3)
    expected = score_text(GPTModel(PRESETS["gpt-nano"]).eval(), TEXT)
    assert data["totals"]["mean_loss"] == pytest.approx(expected.mean_loss, rel=1e-6)
    assert data["totals"]["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-6)
    assert [t["position"] for t in data["tokens"]] == list(range(1, len(expected.ids)))
    first = data["tokens"][0]
    assert set(first) == {"position", "token_id", "text", "prob", "rank", "loss", "context", "top"}
    assert len(first["top"]) == 2


def test_score_prints_totals_and_reads_stdin(data_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(TEXT))
    assert main(["score", "-", *FRESH]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["TOKENS", "SCORED", "MEAN", "LOSS", "PERPLEXITY", "BITS/BYTE", "WINDOWS"]
    assert float(row.split()[2]) > 0


def test_lens_json_has_a_row_per_layer_ending_in_the_models_prediction(data_dir, capsys):
    data = _json(capsys, ["lens", "--position", "4", TEXT, *FRESH, "--json", "--top-k", "3"])
    torch.manual_seed(3)
    model = GPTModel(PRESETS["gpt-nano"]).eval()
    ids = score_text(model, TEXT).ids
    with torch.no_grad():
        top = torch.softmax(model(torch.tensor([ids[:5]]))[0, -1], -1).topk(3)
    assert data["position"] == 4 and len(data["layers"]) == PRESETS["gpt-nano"].n_layers
    assert [t["token_id"] for t in data["layers"][-1]["top"]] == top.indices.tolist()


def test_attention_json_summarises_every_head(data_dir, capsys):
    data = _json(capsys, ["attention", TEXT, *FRESH, "--json"])
    cfg = PRESETS["gpt-nano"]
    assert [(h["layer"], h["head"]) for h in data["heads"]] == [
        (layer, head) for layer in range(1, cfg.n_layers + 1) for head in range(1, cfg.n_heads + 1)]
    assert all(h["looks_at"] in ("previous", "first", "self", "spread") for h in data["heads"])
    assert main(["attention", TEXT, *FRESH]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["LAYER", "HEAD", "ENTROPY"] and len(lines) == 1 + cfg.n_layers * cfg.n_heads


@pytest.fixture
def trained_run(data_dir, tmp_path, verdict_text) -> str:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(verdict_text[:6000], encoding="utf-8")
    config = TrainConfig(preset="gpt-nano", model_overrides={"context_length": 32}, corpus=str(corpus), batch_size=2,
                         max_steps=4, eval_freq=2, eval_iter=1, sample_tokens=0, checkpoint_every=2, keep_last=5,
                         seed=1, device="cpu")
    assert train_run(config, run_name="tiny", data_dir=data_dir).state == "finished"
    return "tiny"


def test_compare_a_checkpoint_with_itself_is_zero_and_runs_load_by_name(data_dir, trained_run, text_file, capsys):
    checkpoints = list_checkpoints(RunStore(data_dir).open(trained_run).checkpoints_dir)
    early = str(min(checkpoints, key=lambda c: c.step).path)
    data = _json(capsys, ["compare", early, early, str(text_file), "--json"])
    assert data["mean_loss_delta"] == 0 and all(t["delta"] == 0 for t in data["tokens"])
    assert data["most_improved"] == [] and data["most_worsened"] == []

    data = _json(capsys, ["compare", early, trained_run, str(text_file), "--json", "--top", "3"])
    assert data["a"]["mean_loss"] != data["b"]["mean_loss"]
    assert len(data["most_improved"]) <= 3 and len(data["most_worsened"]) <= 3
    assert data["mean_loss_delta"] == pytest.approx(data["b"]["mean_loss"] - data["a"]["mean_loss"])
    assert main(["compare", early, f"{trained_run}@best", str(text_file)]) == 0
    out = capsys.readouterr().out
    assert "most improved in B:" in out and "most worsened in B:" in out


def test_score_a_run_by_name(data_dir, trained_run, text_file, capsys):
    data = _json(capsys, ["score", str(text_file), "--run-name", trained_run, "--best", "--json"])
    assert data["totals"]["scored_tokens"] == len(data["tokens"]) > 0


@pytest.mark.parametrize("args, message", [
    (["score", "EMPTY", *FRESH], "empty"),
    (["score", "MISSING", *FRESH], "no such file"),
    (["lens", "--position", "99", "short text", *FRESH], "outside"),
    (["score", "TEXT", "--model", "no-such-model"], "not an existing file"),
    (["score", "TEXT", "--run-name", "nobody"], "nobody"),
    (["compare", "gpt-nano", "no-such-model", "TEXT"], "not an existing file"),
    (["score", "TEXT", *FRESH, "--stride", "0"], "--stride"),
])
def test_bad_input_fails_with_one_line_and_exit_2(data_dir, tmp_path, text_file, capsys, args, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    names = {"EMPTY": str(empty), "MISSING": str(tmp_path / "missing.txt"), "TEXT": str(text_file)}
    assert main([names.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err
    # Only the error line: a loaded model's 'model: ...' line may come before it.
    errors = [line for line in err.splitlines() if not line.startswith("model: ")]
    assert "Traceback" not in err and len(errors) == 1
    assert errors[0].startswith("tui-gpt: error: ") and message in errors[0]
