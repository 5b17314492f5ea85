"""Importing GPT-2 (Hugging Face layout) and the book's .pth files, with transformers as the oracle.

The resolver in front of them (which file is which) is tested in tests/test_resolver.py.
"""

from __future__ import annotations

import builtins
import json
import pickle
import shutil
import socket
import sys
import time
import types
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from engine.weights import hf_cache
from engine.model.config import GPTConfig
from engine.errors import CheckpointError
from engine.model.generation import generate
from engine.model.gpt import GPTModel
from engine.weights.book import load_book_state_dict
from engine.weights.gpt2 import available_gpt2_models, load_gpt2, resolve_gpt2_files
from engine.weights.resolver import resolve_model
from engine.weights.tensor_files import reading_safetensors

CONTEXT = 32


def _save_hf(folder: Path, seed: int = 0, **overrides):
    """A randomly initialised GPT2LMHeadModel, saved as the hub lays it out; returns the model."""
    torch.manual_seed(seed)
    settings = dict(n_layer=2, n_head=2, n_embd=32, n_positions=CONTEXT, vocab_size=50257) | overrides
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-tiny")
    return _save_hf(folder), folder


@pytest.fixture(autouse=True)
def no_network(tmp_path, monkeypatch):
    """No test reaches the network, and none sees the real hub cache."""
    def refuse(*args, **kwargs):
        raise OSError(101, "Network is unreachable (disabled in tests)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for variable in ("TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)


def _logits(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(idx) if isinstance(model, GPTModel) else model(idx).logits


def _prompt(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 50257, (1, length), generator=torch.Generator().manual_seed(seed))


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- transformers as oracle -----------------------------------------------------------------


def test_imported_model_matches_transformers_logits(hf_tiny):
    hf, folder = hf_tiny
    model = load_gpt2(folder)
    assert model.cfg == GPTConfig(vocab_size=50257, context_length=CONTEXT, emb_dim=32, n_heads=2, n_layers=2,
                                  drop_rate=0.0, qkv_bias=True, tie_embeddings=True)
    assert model.out_head.weight is model.tok_emb.weight
    assert not model.training
    assert all(p.is_contiguous() for p in model.parameters())
    idx = torch.randint(0, 50257, (2, CONTEXT), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_logits(model, idx), _logits(hf, idx), atol=1e-5, rtol=0)


def test_greedy_generation_matches_transformers_within_the_context(hf_tiny):
    hf, folder = hf_tiny
    model = load_gpt2(folder)
    prompt, new = _prompt(8), CONTEXT - 8
    ours = generate(model, prompt, max_new_tokens=new, context_size=CONTEXT)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False,
                         use_cache=True, pad_token_id=50256, eos_token_id=None)
    assert theirs.shape[1] == CONTEXT  # transformers did not stop early
    assert ours.tolist() == theirs.tolist()


def test_greedy_generation_slides_the_window_like_transformers(hf_tiny):
    """Past the context, each token is the argmax of transformers' forward over the last CONTEXT tokens.

    transformers cannot generate beyond n_positions, so the reference crops the
    sequence to the window and recomputes without a cache at every step; ours
    rebuilds its key/value cache whenever the window slides.
    """
    hf, folder = hf_tiny
    model = load_gpt2(folder)
    prompt, new = _prompt(CONTEXT + 8, seed=2), 12
    ours = generate(model, prompt, max_new_tokens=new, context_size=CONTEXT)
    reference = prompt
    for _ in range(new):
        next_id = _logits(hf, reference[:, -CONTEXT:])[:, -1].argmax(dim=-1, keepdim=True)
        reference = torch.cat([reference, next_id], dim=1)
    assert ours.tolist() == reference.tolist()


@pytest.mark.parametrize("layout", ["without transformer. prefix, with mask buffers", "with transformer. prefix"])
def test_both_key_layouts_load(hf_tiny, tmp_path, layout):
    hf, folder = hf_tiny
    tensors = load_file(folder / "model.safetensors")
    assert all(name.startswith("transformer.") for name in tensors)
    if layout.startswith("without"):
        # As OpenAI's files on the hub are: bare names, plus the causal masks as tensors.
        tensors = {name.removeprefix("transformer."): t for name, t in tensors.items()}
        mask = torch.tril(torch.ones(CONTEXT, CONTEXT)).view(1, 1, CONTEXT, CONTEXT)
        for i in range(2):
            tensors[f"h.{i}.attn.bias"] = mask.clone()
            tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, tmp_path / "model.safetensors")
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    idx = _prompt(CONTEXT)
    torch.testing.assert_close(_logits(load_gpt2(tmp_path), idx), _logits(hf, idx), atol=1e-5, rtol=0)


def test_untied_output_head_loads_as_its_own_weight(tmp_path):
    hf = _save_hf(tmp_path, tie_word_embeddings=False)
    model = load_gpt2(tmp_path)
    assert not model.cfg.tie_embeddings
    assert model.out_head.weight is not model.tok_emb.weight
    idx = _prompt(CONTEXT)
    torch.testing.assert_close(_logits(model, idx), _logits(hf, idx), atol=1e-5, rtol=0)


def test_bare_weights_file_of_a_gpt2_width_needs_no_config(tmp_path):
    hf = _save_hf(tmp_path / "hub", n_embd=768, n_head=12, n_layer=1, n_positions=16, vocab_size=100)
    weights = tmp_path / "gpt2.safetensors"
    shutil.copy(tmp_path / "hub" / "model.safetensors", weights)
    resolved = resolve_model(str(weights))
    model, description = resolved.model, resolved.description
    assert (model.cfg.n_heads, model.cfg.context_length, model.cfg.vocab_size) == (12, 16, 100)
    assert str(weights) in description
    idx = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(_logits(model, idx), _logits(hf, idx), atol=1e-5, rtol=0)


def test_dtype_converts_weights(hf_tiny):
    model = load_gpt2(hf_tiny[1], dtype=torch.bfloat16, drop_rate=0.1)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.cfg.drop_rate == 0.1


# --- where the files come from ---------------------------------------------------------------


def _make_hub_cache(cache: Path, repo_id: str, source: Path, commit: str = "0123abcd") -> Path:
    """A cache laid out as huggingface_hub lays it out: blobs, snapshot links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for i, name in enumerate(("config.json", "model.safetensors")):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copy(source / name, blob)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    return snapshot


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
@pytest.mark.parametrize("repo_id", ["openai-community/gpt2", "gpt2"])
def test_loads_from_the_hub_cache_with_the_network_off(hf_tiny, tmp_path, monkeypatch, variable, repo_id):
    hf, folder = hf_tiny
    hub = tmp_path / "hf-home" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv(variable, str(hub if variable == "HF_HUB_CACHE" else hub.parent))
    snapshot = _make_hub_cache(hub, repo_id, folder)
    assert available_gpt2_models() == ["gpt2"]
    files = resolve_gpt2_files("124M")
    assert files.weights_path == snapshot / "model.safetensors"
    assert "Hugging Face cache" in files.source
    resolved = resolve_model("gpt2-small")
    model, description = resolved.model, resolved.description
    assert "Hugging Face cache" in description
    idx = _prompt(CONTEXT)
    torch.testing.assert_close(_logits(model, idx), _logits(hf, idx), atol=1e-5, rtol=0)


def test_an_incomplete_snapshot_is_passed_over(hf_tiny, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    complete = _make_hub_cache(hub, "openai-community/gpt2-medium", hf_tiny[1])
    newer = complete.parent / "fedcba98"  # refs/main moved on, but only config.json came down
    newer.mkdir()
    shutil.copy(complete / "config.json", newer / "config.json")
    (complete.parents[1] / "refs" / "main").write_text("fedcba98")
    assert resolve_gpt2_files("gpt2-medium").weights_path == complete / "model.safetensors"
    assert available_gpt2_models() == ["gpt2-medium"]


def test_offline_with_an_empty_cache_says_what_was_tried_quickly():
    start = time.monotonic()
    with pytest.raises(CheckpointError) as excinfo:
        load_gpt2("gpt2-xl")
    assert time.monotonic() - start < 2
    message = _one_line_error(excinfo)
    for expected in ("models--openai-community--gpt2-xl", "models--gpt2-xl", "HF_HUB_OFFLINE=1 is set",
                     "hf download openai-community/gpt2-xl config.json model.safetensors", "pass a folder"):
        assert expected in message
    assert available_gpt2_models() == []


def test_unreachable_network_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    start = time.monotonic()
    with pytest.raises(CheckpointError) as excinfo:
        load_gpt2("355M")
    assert time.monotonic() - start < 5
    assert "huggingface.co unreachable" in _one_line_error(excinfo)


def test_without_huggingface_hub_the_cache_still_works_and_the_error_says_so(hf_tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(CheckpointError, match="huggingface_hub is not installed"):
        load_gpt2("gpt2")
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    _make_hub_cache(hub, "gpt2", hf_tiny[1])
    assert load_gpt2("gpt2").cfg.n_layers == 2


def test_download_goes_through_huggingface_hub_into_the_cache(hf_tiny, tmp_path, monkeypatch):
    """The hub client itself is replaced by a stand-in that copies files into the cache as it would."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_cache, "probe", lambda endpoint: None)
    calls = []

    def fake_download(repo_id, filename, *, endpoint, cache_dir, tqdm_class):
        calls.append((repo_id, filename, endpoint, tqdm_class))
        snapshot = Path(cache_dir) / ("models--" + repo_id.replace("/", "--")) / "snapshots" / "abc"
        snapshot.mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(hf_tiny[1] / filename, snapshot / filename))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=fake_download))
    progress = object()
    files = resolve_gpt2_files("gpt2", tqdm_class=progress)
    assert "download of openai-community/gpt2" in files.source
    assert calls == [("openai-community/gpt2", name, "https://huggingface.co", progress)
                     for name in ("config.json", "model.safetensors")]
    assert load_gpt2("gpt2").cfg.emb_dim == 32
    assert len(calls) == 2  # the second load found the files in the cache


# --- the book's own checkpoints -------------------------------------------------------------


def test_book_state_dict_round_trips(tiny_config, tmp_path):
    torch.manual_seed(0)
    original = GPTModel(tiny_config).eval()
    path = tmp_path / "model.pth"
    state = original.state_dict()
    # The book's MultiHeadAttention registers its causal mask, so its .pth files carry it.
    state["trf_blocks.0.att.mask"] = torch.triu(torch.ones(32, 32), diagonal=1)
    torch.save(state, path)
    model = load_book_state_dict(path, tiny_config)
    idx = _prompt(32)
    assert torch.equal(_logits(model, idx), _logits(original, idx))


def test_book_config_is_read_off_the_shapes_for_gpt2_widths(tmp_path):
    cfg = GPTConfig(vocab_size=100, context_length=16, emb_dim=768, n_heads=12, n_layers=2, drop_rate=0.0)
    torch.manual_seed(0)
    original = GPTModel(cfg).eval()
    # The book's chapter-5 format that also holds the optimizer.
    optimizer = torch.optim.AdamW(original.parameters())
    torch.save({"model_state_dict": original.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
               tmp_path / "model_and_optimizer.pth")
    resolved = resolve_model(str(tmp_path / "model_and_optimizer.pth"))
    model, description = resolved.model, resolved.description
    assert model.cfg == cfg
    assert "book-format" in description
    idx = torch.randint(0, 100, (1, 16))
    assert torch.equal(_logits(model, idx), _logits(original, idx))


def test_tied_gpt2_saved_in_book_format_stays_tied(hf_tiny, tmp_path):
    imported = load_gpt2(hf_tiny[1])
    torch.save(imported.state_dict(), tmp_path / "gpt2.pth")
    save_file({k: v for k, v in imported.state_dict().items() if k != "out_head.weight"},
              tmp_path / "gpt2.safetensors")
    for name in ("gpt2.pth", "gpt2.safetensors"):
        with pytest.raises(CheckpointError, match="32-wide model.*pass its config"):
            load_book_state_dict(tmp_path / name)
        model = load_book_state_dict(tmp_path / name, imported.cfg)
        assert model.out_head.weight is model.tok_emb.weight
        idx = _prompt(CONTEXT)
        assert torch.equal(_logits(model, idx), _logits(imported, idx))


def test_a_config_that_ties_a_separate_head_is_refused(tiny_config, tmp_path):
    torch.save(GPTModel(tiny_config).state_dict(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="holds an output head of its own, but the config ties it"):
        load_book_state_dict(tmp_path / "model.pth", tiny_config.with_overrides(tie_embeddings=True))


def test_book_state_dict_that_does_not_fit_the_config(tiny_config, tmp_path):
    torch.save(GPTModel(tiny_config).state_dict(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError) as excinfo:
        load_book_state_dict(tmp_path / "model.pth", tiny_config.with_overrides(n_layers=3, emb_dim=64))
    message = _one_line_error(excinfo)
    assert "model.pth does not match the model config" in message
    assert "tok_emb.weight has shape [50257, 32], expected [50257, 64]" in message
    assert "more)" in message


# --- errors ---------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates `marker`: code a checkpoint must never get to run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_with_code_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pth"
    payload = {"tok_emb.weight": torch.zeros(2, 2), "evil": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for load in (load_book_state_dict, lambda p: resolve_model(str(p))):
        with pytest.raises(CheckpointError) as excinfo:
            load(path)
        assert "refused to load it" in _one_line_error(excinfo)
    assert not marker.exists()


def test_a_pickle_posing_as_safetensors_is_refused(hf_tiny, tmp_path):
    marker = tmp_path / "code-ran"
    shutil.copy(hf_tiny[1] / "config.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_gpt2(tmp_path)
    assert not marker.exists()


def test_truncated_files_name_the_file(hf_tiny, tiny_config, tmp_path):
    shutil.copy(hf_tiny[1] / "config.json", tmp_path / "config.json")
    data = (hf_tiny[1] / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_gpt2(tmp_path)
    assert f"{tmp_path / 'model.safetensors'} is not a valid safetensors file" in _one_line_error(excinfo)

    torch.save(GPTModel(tiny_config).state_dict(), tmp_path / "model.pth")
    data = (tmp_path / "model.pth").read_bytes()
    (tmp_path / "model.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        load_book_state_dict(tmp_path / "model.pth", tiny_config)
    assert f"{tmp_path / 'model.pth'} is not a readable PyTorch checkpoint" in _one_line_error(excinfo)


def test_an_os_error_from_the_callers_own_code_is_not_blamed_on_the_file(hf_tiny):
    """Only opening and reading the file are translated; the `with` body's own errors pass through."""
    with pytest.raises(OSError, match="No space left on device"):
        with reading_safetensors(hf_tiny[1] / "model.safetensors") as f:
            assert f.keys()
            raise OSError(28, "No space left on device")


def test_a_file_cut_short_while_it_is_being_read_is_named(hf_tiny, tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(hf_tiny[1] / "model.safetensors", path)
    with reading_safetensors(path) as f:
        names = f.keys()
        with open(path, "r+b") as file:
            file.truncate(path.stat().st_size // 2)
        with pytest.raises(CheckpointError) as excinfo:
            for name in names:
                f.get_tensor(name)
    assert f"{path} is not a valid safetensors file" in _one_line_error(excinfo)


def test_missing_files(hf_tiny, tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_book_state_dict(tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="neither an existing file or folder nor a GPT-2 name"):
        load_gpt2(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is not an existing file or folder, a GPT-2 name"):
        resolve_model(str(tmp_path / "nowhere.pth"))
    shutil.copy(hf_tiny[1] / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        load_gpt2(tmp_path)


@pytest.mark.parametrize("edit, expected", [
    ({"n_layer": 3}, "does not match .*config.json: missing h.2.ln_1.weight"),
    ({"n_layer": 1}, "unexpected h.1.attn.c_attn.bias"),
    ({"n_embd": 64, "n_head": 4}, r"wte.weight has shape \[50257, 32\], expected \[50257, 64\]"),
    ({"n_positions": 1024}, r"wpe.weight has shape \[32, 32\], expected \[1024, 32\]"),
    ({"model_type": "llama"}, "only GPT-2"),
    ({"activation_function": "relu"}, "does not implement activation_function='relu'"),
    ({"n_head": None}, "lacks 'n_head'"),
])
def test_a_config_that_does_not_fit_the_tensors(hf_tiny, tmp_path, edit, expected):
    config = json.loads((hf_tiny[1] / "config.json").read_text())
    config.update(edit)
    config = {k: v for k, v in config.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(hf_tiny[1] / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=expected) as excinfo:
        load_gpt2(tmp_path)
    _one_line_error(excinfo)


def test_the_reachability_probe_goes_to_the_proxy_when_one_is_set(monkeypatch):
    tried = []

    def refuse(address, timeout=None):
        tried.append(address)
        raise OSError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for variable in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    assert hf_cache.probe("https://huggingface.co") == "huggingface.co unreachable (Connection refused)"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hf_cache.probe("https://huggingface.co") == "proxy.example unreachable (Connection refused)"
    assert tried == [("huggingface.co", 443), ("proxy.example", 3128)]


def test_a_tensor_that_is_not_floating_point_is_refused(hf_tiny, tmp_path):
    tensors = load_file(hf_tiny[1] / "model.safetensors")
    tensors["transformer.h.0.ln_1.weight"] = tensors["transformer.h.0.ln_1.weight"].to(torch.int64)
    save_file(tensors, tmp_path / "model.safetensors")
    shutil.copy(hf_tiny[1] / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="h.0.ln_1.weight is stored as I64, not as floating point"):
        load_gpt2(tmp_path)
