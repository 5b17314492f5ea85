"""Importing nanoGPT checkpoints and llm.c model files, built here as their own programs write them."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.weights.llmc import load_llmc
from engine.weights.nanogpt import load_nanogpt
from engine.weights.resolver import resolve_model


def load_any_model(spec: str):
    """What --model SPEC loads: the model and its one-line description."""
    resolved = resolve_model(spec)
    return resolved.model, resolved.description


C, L, T, HEADS = 32, 2, 32, 2
PADDED_VOCAB = 50304  # 50257 rounded up to a multiple of 64 (nanoGPT) or 128 (llm.c)


def _model(bias: bool = True, seed: int = 0) -> GPTModel:
    """A model both programs can express: tied head, and either all biases or none."""
    torch.manual_seed(seed)
    model = GPTModel(GPTConfig(context_length=T, emb_dim=C, n_heads=HEADS, n_layers=L, drop_rate=0.0,
                               qkv_bias=bias, tie_embeddings=True)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".bias", ".shift")):
                param.copy_(torch.randn_like(param) * 0.1 if bias else torch.zeros_like(param))
    return model


def _gpt2_linear_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    """The model under GPT-2's names in nn.Linear's layout, as nanoGPT's GPT and llm.c's train_gpt2.py name them."""
    tensors = {"wte.weight": model.tok_emb.weight, "wpe.weight": model.pos_emb.weight}
    for i, block in enumerate(model.trf_blocks):
        att, ff = block.att, block.ff.layers
        tensors |= {
            f"h.{i}.ln_1.weight": block.norm1.scale, f"h.{i}.ln_1.bias": block.norm1.shift,
            f"h.{i}.attn.c_attn.weight": torch.cat([att.W_query.weight, att.W_key.weight, att.W_value.weight]),
            f"h.{i}.attn.c_proj.weight": att.out_proj.weight, f"h.{i}.attn.c_proj.bias": att.out_proj.bias,
            f"h.{i}.ln_2.weight": block.norm2.scale, f"h.{i}.ln_2.bias": block.norm2.shift,
            f"h.{i}.mlp.c_fc.weight": ff[0].weight, f"h.{i}.mlp.c_fc.bias": ff[0].bias,
            f"h.{i}.mlp.c_proj.weight": ff[2].weight, f"h.{i}.mlp.c_proj.bias": ff[2].bias,
        }
        if att.W_query.bias is not None:
            tensors[f"h.{i}.attn.c_attn.bias"] = torch.cat([att.W_query.bias, att.W_key.bias, att.W_value.bias])
    tensors |= {"ln_f.weight": model.final_norm.scale, "ln_f.bias": model.final_norm.shift}
    return {name: t.detach().clone() for name, t in tensors.items()}


def _logits(model: GPTModel, vocab: int = 50257) -> torch.Tensor:
    idx = torch.randint(0, 50257, (1, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(idx)[..., :vocab]


# --- nanoGPT --------------------------------------------------------------------------------


def _write_nanogpt(path: Path, model: GPTModel, *, bias: bool = True, compiled: bool = False,
                   extra: dict | None = None) -> None:
    """A ckpt.pt as nanoGPT's train.py saves it."""
    tensors = _gpt2_linear_tensors(model)
    if not bias:
        tensors = {n: t for n, t in tensors.items() if not n.endswith(".bias")}
    padding = torch.randn(PADDED_VOCAB - 50257, C)  # never-trained rows: whatever they hold must not matter
    wte = torch.cat([tensors.pop("wte.weight"), padding])
    state = {f"transformer.{n}": t for n, t in tensors.items()}
    state["transformer.wte.weight"] = wte
    state["lm_head.weight"] = wte  # nanoGPT ties them: one storage, saved once
    for i in range(L):  # the causal mask buffer of attention without flash
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    if compiled:
        state = {f"_orig_mod.{n}": t for n, t in state.items()}
    model_args = dict(n_layer=L, n_head=HEADS, n_embd=C, block_size=T, bias=bias, vocab_size=PADDED_VOCAB,
                      dropout=0.0)
    optimizer = {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}},
                 "param_groups": [{"lr": 6e-4, "betas": (0.9, 0.95), "weight_decay": 0.1, "params": [0]}]}
    checkpoint = {"model": state, "optimizer": optimizer, "model_args": model_args, "iter_num": 2000,
                  "best_val_loss": torch.tensor(3.25),
                  "config": {"dataset": "openwebtext", "batch_size": 12, "compile": compiled, "dtype": "bfloat16"}}
    torch.save(checkpoint | (extra or {}), path)


@pytest.mark.parametrize("bias, compiled", [(True, False), (True, True), (False, False)],
                         ids=["bias", "compiled", "no-bias"])
def test_nanogpt_checkpoint_gives_the_same_logits(tmp_path, bias, compiled):
    model = _model(bias=bias)
    path = tmp_path / "ckpt.pt"
    _write_nanogpt(path, model, bias=bias, compiled=compiled)
    loaded, description = load_any_model(str(path))
    assert loaded.cfg.vocab_size == 50257 and loaded.cfg.tie_embeddings and loaded.cfg.qkv_bias is bias
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=1e-5, rtol=0)
    assert "nanoGPT checkpoint" in description and "iteration 2,000" in description
    assert "cropped from nanoGPT's padded 50,304 to GPT-2's 50,257" in description


def test_nanogpt_checkpoint_can_start_a_finetune_and_the_app_can_pick_it(tmp_path):
    from engine.training.settings import TrainConfig
    from engine.training.trainer import _build_model
    from tui_gpt.app.services.model_catalog import ModelChoice, load_choice

    model = _model()
    path = tmp_path / "ckpt.pt"
    _write_nanogpt(path, model)
    started = _build_model(TrainConfig(init_from=str(path)), torch.device("cpu")).eval()
    torch.testing.assert_close(_logits(started), _logits(model), atol=1e-5, rtol=0)
    picked = load_choice(ModelChoice("file", str(path)), tmp_path, "cpu")
    assert picked.description.startswith("nanoGPT checkpoint")


class _Payload:
    """Unpickling this creates `marker`: code a checkpoint must never get to run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_a_nanogpt_checkpoint_with_code_in_it_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "ckpt.pt"
    _write_nanogpt(path, _model(), extra={"config": {"hook": _Payload(marker)}})
    for load in (lambda p: load_any_model(str(p)), load_nanogpt):
        with pytest.raises(CheckpointError, match="refused to load it"):
            load(path)
    assert not marker.exists()


# --- llm.c ----------------------------------------------------------------------------------


def _write_llmc(path: Path, model: GPTModel, dtype: str, *, magic: int = 20240326, version: int | None = None,
                cut: int = 0) -> None:
    """A model file as llm.c's train_gpt2.py write_model writes it."""
    tensors = _gpt2_linear_tensors(model)
    tensors["wte.weight"] = torch.cat([tensors["wte.weight"], torch.zeros(PADDED_VOCAB - 50257, C)])  # pad_vocab
    header = np.zeros(256, dtype="<i4")
    header[:8] = [magic, version or {"float32": 3, "bfloat16": 5}[dtype], T, 50257, L, HEADS, C, PADDED_VOCAB]
    per_layer = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                 "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                 "mlp.c_proj.weight", "mlp.c_proj.bias"]
    order = ["wte.weight", "wpe.weight", *[f"h.{i}.{name}" for name in per_layer for i in range(L)],
             "ln_f.weight", "ln_f.bias"]
    chunks = [header.tobytes()]
    for name in order:
        t = tensors[name]
        chunks.append(t.numpy().astype("<f4").tobytes() if dtype == "float32"
                      else t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    data = b"".join(chunks)
    path.write_bytes(data[:len(data) - cut])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_llmc_model_file_gives_the_same_logits(tmp_path, dtype):
    model = _model()
    path = tmp_path / f"gpt2_tiny_{dtype}.bin"
    _write_llmc(path, model, dtype)
    loaded, description = load_any_model(str(path))
    if dtype == "bfloat16":  # the file holds bfloat16: compare with the same rounded weights
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.to(torch.bfloat16).float())
    torch.testing.assert_close(_logits(loaded), _logits(model), atol=1e-5, rtol=0)
    assert loaded.cfg == model.cfg
    assert f"llm.c model {path} (version {3 if dtype == 'float32' else 5}, {dtype}" in description
    assert "cropped from llm.c's padded 50,304 to 50,257" in description


@pytest.mark.parametrize("options, message", [
    ({"magic": 1234}, "is not an llm.c model file (no magic number 20240326 in its header)"),
    ({"version": 2}, "is an llm.c model file of version 2; tui-gpt reads versions 3 (float32) and 5 (bfloat16)"),
    ({"cut": 100}, "truncated or damaged"),
], ids=["magic", "version", "size"])
def test_a_bad_llmc_file_is_refused_in_one_line(tmp_path, options, message):
    path = tmp_path / "model.bin"
    _write_llmc(path, _model(), "float32", **options)
    with pytest.raises(CheckpointError) as excinfo:
        load_llmc(path)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
