"""Exports to Hugging Face folders and GGUF files, with transformers and gguf's reader as the oracles."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers

from engine.errors import CheckpointError, ConfigError
from engine.model.config import GPTConfig
from engine.model.generation import generate
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.runs.atomic import WriteError
from engine.runs.events import EvalDone, MetricsWriter, RunStarted, StepDone
from engine.runs.store import RunStore
from engine.training.checkpointing import save_checkpoint
from engine.training.state_codec import state_to_tensors
from engine.weights.export import (
    ExportRequest,
    load_checkpoint_for_export,
    load_run_for_export,
)
from engine.weights.export_gguf import modelfile_path
from engine.weights.model_card import card_for_model
from engine.weights.resolver import resolve_model
from tui_gpt.cli.main import main

CONTEXT = 32


def _model(seed: int = 0, **overrides) -> GPTModel:
    torch.manual_seed(seed)
    settings = dict(context_length=CONTEXT, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0) | overrides
    model = GPTModel(GPTConfig(**settings)).eval()
    with torch.no_grad():  # biases and norms start at 0 and 1: make them matter
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def _export(model: GPTModel, out: Path, fmt: str = "hf", **options) -> list[Path]:
    return ExportRequest(fmt, out, **options).write(model, card_for_model(model.cfg, "tiny", "a test"))


def _prompt(length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 50257, (1, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Loading an export must never reach the network."""
    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (disabled in tests)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- Hugging Face ---------------------------------------------------------------------------


@pytest.mark.parametrize("tied, qkv_bias", [(False, False), (True, True)], ids=["book", "gpt2-like"])
def test_hf_export_computes_the_engines_logits_in_transformers(tmp_path, tied, qkv_bias):
    model = _model(tie_embeddings=tied, qkv_bias=qkv_bias)
    _export(model, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    idx = _prompt()
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), atol=1e-4, rtol=0)
        ours = generate(model, idx, max_new_tokens=CONTEXT - idx.shape[1], context_size=CONTEXT)
        theirs = hf.generate(idx, max_new_tokens=CONTEXT - idx.shape[1], do_sample=False, min_new_tokens=1,
                             eos_token_id=None, pad_token_id=0)
    assert theirs.tolist() == ours.tolist()


def test_hf_export_round_trips_through_the_model_resolver(tmp_path):
    model = _model()  # the book's: no qkv biases, untied head
    _export(model, tmp_path / "out")
    resolved = resolve_model(str(tmp_path / "out"))
    back, description = resolved.model, resolved.description
    state, loaded = model.state_dict(), back.state_dict()
    assert all(torch.equal(state[name], loaded[name]) for name in state)
    # GPT-2 always has query/key/value biases: the exported ones are zeros
    extra = {name: loaded[name] for name in loaded if name not in state}
    assert extra and all(name.endswith((".W_query.bias", ".W_key.bias", ".W_value.bias")) for name in extra)
    assert all(not t.any() for t in extra.values())
    assert "GPT-2 weights" in description


def test_exported_tokenizer_encodes_like_the_engine(tmp_path):
    _export(_model(), tmp_path / "out")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    ours = get_tokenizer()
    texts = ["Every effort moves you", "  two  spaces\n\nand\ttabs ", "It's we'll they've I'd",
             "héllo wörld, naïve café", "日本語のテキスト", "emoji 🎉👩‍👩‍👧 and ✨", "3.14159 and 1,000,000",
             "<|endoftext|>next document"]
    for text in texts:
        ids = ours.encode(text, allowed_special="all")
        assert theirs.encode(text) == ids, text
        assert theirs.decode(ids) == text
    assert theirs.eos_token_id == theirs.bos_token_id == 50256
    assert theirs.model_max_length == CONTEXT


def test_hf_export_writes_a_model_card(tmp_path):
    _export(_model(), tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("# tiny\n") and "| emb_dim | 32 |" in card and "AutoModelForCausalLM" in card


# --- GGUF -----------------------------------------------------------------------------------


def _fields(reader: gguf.GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}


@pytest.mark.parametrize("gguf_type, matrix_type", [("f32", "F32"), ("f16", "F16"), ("q8_0", "Q8_0")])
def test_gguf_export_reads_back_with_gpt2_names_shapes_and_tokenizer(tmp_path, gguf_type, matrix_type):
    model = _model(tie_embeddings=True)
    out, modelfile = _export(model, tmp_path / "tiny.gguf", "gguf", gguf_type=gguf_type)
    reader = gguf.GGUFReader(out)
    tensors = {t.name: t for t in reader.tensors}
    e, layers = 32, 2
    expected = {"token_embd.weight": [e, 50257], "position_embd.weight": [e, CONTEXT], "output.weight": [e, 50257],
                "output_norm.weight": [e], "output_norm.bias": [e]}
    for i in range(layers):
        expected |= {f"blk.{i}.attn_qkv.weight": [e, 3 * e], f"blk.{i}.attn_qkv.bias": [3 * e],
                     f"blk.{i}.attn_output.weight": [e, e], f"blk.{i}.ffn_up.weight": [e, 4 * e],
                     f"blk.{i}.ffn_down.weight": [4 * e, e], f"blk.{i}.attn_norm.bias": [e],
                     f"blk.{i}.ffn_norm.weight": [e]}
    for name, shape in expected.items():
        assert tensors[name].shape.tolist() == shape, name
    assert tensors["blk.0.attn_qkv.weight"].tensor_type.name == matrix_type
    assert tensors["blk.0.attn_qkv.bias"].tensor_type.name == "F32"
    assert tensors["position_embd.weight"].tensor_type.name == "F32"
    qkv = torch.cat([model.trf_blocks[0].att.W_query.weight, model.trf_blocks[0].att.W_key.weight,
                     model.trf_blocks[0].att.W_value.weight]).detach().numpy()
    stored = gguf.quants.dequantize(tensors["blk.0.attn_qkv.weight"].data, tensors["blk.0.attn_qkv.weight"].tensor_type)
    np.testing.assert_allclose(stored.reshape(qkv.shape), qkv, atol={"f32": 0, "f16": 1e-3, "q8_0": 2e-2}[gguf_type])

    fields = _fields(reader)
    assert fields["general.architecture"] == "gpt2"
    assert (fields["gpt2.context_length"], fields["gpt2.embedding_length"], fields["gpt2.block_count"],
            fields["gpt2.attention.head_count"], fields["gpt2.feed_forward_length"]) == (CONTEXT, e, layers, 2, 4 * e)
    assert fields["tokenizer.ggml.model"] == "gpt2"
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == 50257 and tokens[50256] == "<|endoftext|>"
    assert tokens[get_tokenizer().encode(" the")[0]] == "Ġthe"
    assert fields["tokenizer.ggml.merges"][:2] == ["Ġ t", "Ġ a"] and len(fields["tokenizer.ggml.merges"]) == 50000
    assert fields["tokenizer.ggml.token_type"][50256] == gguf.TokenType.CONTROL
    assert fields["tokenizer.ggml.bos_token_id"] == fields["tokenizer.ggml.eos_token_id"] == 50256
    assert fields["general.description"].startswith("tiny: a GPT-2-style model")
    assert modelfile == modelfile_path(out) and f"FROM ./{out.name}" in modelfile.read_text()


# --- runs and model cards -------------------------------------------------------------------


def _run_with_checkpoint(data_dir: Path, model: GPTModel, steps: int = 4):
    store = RunStore(data_dir)
    run = store.create("tiny-run", {"preset": "gpt-nano", "model": model.cfg.to_dict(),
                                    "train": {"lr": 0.0004, "batch_size": 2, "epochs": 1, "seed": 123},
                                    "corpus": {"name": "the-verdict.txt", "train_tokens": 4608, "val_tokens": 512}})
    metrics = MetricsWriter(run.metrics_path)
    metrics.write(RunStarted(run="tiny-run", resumed=False, step=0, total_steps=steps, n_params=1, device="cpu"))
    for step in range(steps + 2):  # two steps after the checkpoint, which the card must leave out
        metrics.write(StepDone(step=step, epoch=0, tokens_seen=64 * (step + 1), loss=9.0, lr=4e-4,
                               tokens_per_sec=1.0, step_time=1.0))
        if step % 2 == 1:
            metrics.write(EvalDone(step=step, epoch=0, tokens_seen=64 * (step + 1), train_loss=9.0 - step,
                                   val_loss=9.5 - step, train_ppl=float(np.exp(9.0 - step)),
                                   val_ppl=float(np.exp(9.5 - step))))
    metrics.close()
    tensors, meta = state_to_tensors({"step": steps})
    save_checkpoint(run.checkpoints_dir, steps, model, tensors, meta, val_loss=6.5)
    return run


def test_a_runs_card_tells_its_data_training_and_losses_at_the_checkpoint(tmp_path):
    run = _run_with_checkpoint(tmp_path / "data", _model())
    _, card = load_run_for_export(run)
    assert card.steps == 4 and card.last_eval.step == 3 and card.tokens_seen == 256
    text = card.markdown("")
    for fact in ("the-verdict.txt", "training tokens: 4,608", "steps: 4, 256 tokens seen", "peak learning rate",
                 "| validation | 6.5000 |", "| train | 6.0000 |", "device: cpu"):
        assert fact in text, fact
    checkpoint = run.checkpoints_dir / "step-00000004"
    assert load_checkpoint_for_export(checkpoint)[1] == card  # a run's checkpoint folder finds its run
    assert load_checkpoint_for_export(run.dir)[1] == card


def test_cli_exports_a_run_as_gguf_with_its_card_in_the_metadata(tmp_path, capsys):
    _run_with_checkpoint(tmp_path / "data", _model())
    out = tmp_path / "tiny.gguf"
    assert main(["export", "--data-dir", str(tmp_path / "data"), "--run-name", "tiny-run", "--best",
                 "--format", "gguf", "--gguf-type", "q8_0", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(modelfile_path(out))]
    fields = _fields(gguf.GGUFReader(out))
    assert fields["tui_gpt.steps"] == 4 and fields["tui_gpt.val_loss"] == pytest.approx(6.5)
    assert "the-verdict.txt" in fields["general.description"]


# --- bad input: one line, nothing written ---------------------------------------------------


def _cli_error(capsys, *argv) -> tuple[int, str]:
    code = main(["export", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1]


def test_a_run_without_a_checkpoint_is_refused(tmp_path, capsys):
    RunStore(tmp_path / "data").create("empty", {"model": {}})
    code, line = _cli_error(capsys, "--data-dir", str(tmp_path / "data"), "--run-name", "empty", "--format", "hf",
                            str(tmp_path / "out"))
    assert code == 2 and line == "tui-gpt: error: run empty has no checkpoint to export"
    assert not (tmp_path / "out").exists()


def test_an_existing_output_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, line = _cli_error(capsys, "--model", "gpt-nano", "--format", "hf", str(out))
    assert code == 2 and "already exists" in line and "--force" in line
    assert (out / "mine.txt").read_text() == "keep me"
    model = _model()
    _export(model, out, force=True)
    assert not (out / "mine.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or set-aside copy left


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    from engine.weights import export_hf

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_hf, "save_tensors", full_disk)
    with pytest.raises(WriteError, match="disk full while writing"):
        _export(_model(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expected", [
    (["--format", "zip"], "unknown export format 'zip'; choose one of: hf, gguf"),
    (["--format", "gguf", "--gguf-type", "q4_k"], "unknown GGUF type 'q4_k'; choose one of: f32, f16, q8_0"),
], ids=["format", "gguf-type"])
def test_unknown_formats_are_refused(tmp_path, capsys, argv, expected):
    code, line = _cli_error(capsys, "--model", "gpt-nano", *argv, str(tmp_path / "out"))
    assert (code, line) == (2, f"tui-gpt: error: {expected}")


def test_an_unwritable_destination_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    code, line = _cli_error(capsys, "--model", "no-such-model", "--format", "hf", str(tmp_path / "a-file" / "out"))
    expected = f"cannot write {tmp_path / 'a-file' / 'out'}: {tmp_path / 'a-file'} is not a folder"
    assert (code, line) == (2, f"tui-gpt: error: {expected}")


def test_a_vocabulary_other_than_gpt2s_has_no_tokenizer_to_export(tmp_path):
    with pytest.raises(ConfigError, match="vocabulary of 65 tokens, not GPT-2's 50,257"):
        _export(_model(vocab_size=65), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_best_needs_a_run(tmp_path, capsys):
    code, line = _cli_error(capsys, "--model", "gpt-nano", "--best", "--format", "hf", str(tmp_path / "out"))
    assert (code, line) == (2, "tui-gpt: error: --best goes with --run-name NAME")


def test_a_checkpoint_folder_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(CheckpointError):
        load_checkpoint_for_export(tmp_path)
