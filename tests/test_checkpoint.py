"""Checkpoints: exact round trips, retention, corruption, full disks, kill -9, config checks."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import engine.weights.tensor_files as tensor_files
from engine.runs.checkpoints import best_checkpoint, latest_checkpoint, list_checkpoints
from engine.training.checkpointing import load_checkpoint, load_latest_valid, save_checkpoint
from engine.weights.checkpoint import load_model
from engine.training.state_codec import state_to_tensors, tensors_to_state
from engine.model.config import GPTConfig
from engine.errors import CheckpointError
from engine.model.gpt import GPTModel

REPO = Path(__file__).resolve().parents[1]

# Saves checkpoints of a ~40 MB state in a loop (weights all equal to the step) until killed.
SAVER = """
import sys, torch
from engine.training.checkpointing import save_checkpoint
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
model = GPTModel(GPTConfig(context_length=32, emb_dim=64, n_heads=2, n_layers=1, drop_rate=0.0))
moments = {"exp_avg": torch.zeros(4_000_000)}
step = 0
while True:
    step += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    moments["exp_avg"].fill_(step)
    save_checkpoint(sys.argv[1], step, model, moments, {"step": step}, val_loss=1.0 / step, keep_last=2)
"""


def train_a_little(model: GPTModel, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        inputs = torch.randint(0, model.cfg.vocab_size, (2, 8), generator=gen)
        targets = torch.randint(0, model.cfg.vocab_size, (2, 8), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def make_model(config: GPTConfig, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(config)


def save(folder: Path, step: int, model: GPTModel, val_loss: float | None = None, keep_last: int = 3) -> Path:
    tensors, meta = state_to_tensors({"step": step})
    return save_checkpoint(folder, step, model, tensors, meta, val_loss, keep_last=keep_last)


def assert_identical(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_identical(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_identical(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_state_codec_keeps_keys_tuples_and_odd_floats():
    shared = torch.arange(4.0)
    state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": shared}, 1: {"exp_avg": shared}},
        "param_groups": [{"params": [0, 1], "betas": (0.9, 0.95), "lr": 1e-3, "foreach": None, "fused": False}],
        "odd": [float("nan"), float("inf"), -0.0, 10**30, "text"],
        ("tuple", 1): {"__tensor__": "looks like a tag"},
        "rng": torch.get_rng_state(),
    }
    tensors, meta = state_to_tensors(state)
    assert len(tensors) == 3  # the shared tensor is stored once
    restored = tensors_to_state(tensors, json.loads(json.dumps(meta, allow_nan=False)))
    assert_identical(restored, state)
    assert restored["state"][0]["exp_avg"] is restored["state"][1]["exp_avg"]
    with pytest.raises(TypeError, match="set at state.bad"):
        state_to_tensors({"bad": {1, 2}})


def test_round_trip_is_bit_identical(tmp_path, tiny_config):
    model = make_model(tiny_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    train_a_little(model, optimizer, steps=3, seed=1)
    torch_rng, python_rng = torch.get_rng_state(), random.getstate()
    expected_draw = torch.rand(5), random.random()
    training_state = {
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch_rng,
        "python_rng": python_rng,
        "trainer": {"epoch": 1, "tokens_seen": 4096, "best_val_loss": None, "run": "r", "done": False},
    }
    tensors, meta = state_to_tensors(training_state)
    path = save_checkpoint(tmp_path, 3, model, tensors, meta, val_loss=6.25)
    assert path == tmp_path / "step-00000003"

    manifest = json.loads((path / "COMPLETE").read_text())
    assert manifest["step"] == 3 and manifest["val_loss"] == 6.25
    for name, record in manifest["files"].items():
        data = (path / name).read_bytes()
        assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    loaded = load_checkpoint(path)
    assert (loaded.step, loaded.val_loss, loaded.config) == (3, 6.25, tiny_config)
    assert_identical(loaded.model_state, dict(model.state_dict()))
    restored = loaded.training_state()
    assert_identical(restored["trainer"], training_state["trainer"])

    twin = GPTModel(loaded.config)
    twin.load_state_dict(loaded.model_state, strict=True)
    twin_optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    twin_optimizer.load_state_dict(restored["optimizer"])
    assert_identical(twin_optimizer.state_dict(), optimizer.state_dict())

    torch.set_rng_state(restored["torch_rng"])
    random.setstate(restored["python_rng"])
    assert_identical((torch.rand(5), random.random()), expected_draw)

    train_a_little(model, optimizer, steps=2, seed=2)  # resumed training continues exactly
    train_a_little(twin, twin_optimizer, steps=2, seed=2)
    assert_identical(dict(twin.state_dict()), dict(model.state_dict()))


def test_tied_embeddings_are_stored_once_and_retied(tmp_path, tiny_config):
    config = tiny_config.with_overrides(tie_embeddings=True)
    model = make_model(config)
    path = save(tmp_path, 1, model)
    assert "out_head.weight" not in load_file(path / "model.safetensors")
    loaded, notes = load_model(path)
    assert notes == [] and loaded.out_head.weight is loaded.tok_emb.weight
    tokens = torch.randint(0, config.vocab_size, (1, 6))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model.eval()(tokens))


def test_retention_keeps_the_newest_and_the_best(tmp_path, tiny_config):
    model = make_model(tiny_config)
    for step, val_loss in enumerate([5.0, 2.0, 4.0, 4.5, 4.2, 4.1], start=1):
        save(tmp_path, step, model, val_loss, keep_last=2)
    assert [info.step for info in list_checkpoints(tmp_path)] == [6, 5, 2]
    assert best_checkpoint(tmp_path).step == 2 and latest_checkpoint(tmp_path).step == 6
    assert json.loads((tmp_path / "best.json").read_text()) == {"step": 2, "val_loss": 2.0, "path": "step-00000002"}
    assert sorted(os.listdir(tmp_path)) == ["best.json", "step-00000002", "step-00000005", "step-00000006"]


def test_saving_a_step_again_replaces_it_whole(tmp_path, tiny_config):
    save(tmp_path, 5, make_model(tiny_config, seed=1), val_loss=3.0)
    newer = make_model(tiny_config, seed=2)
    save(tmp_path, 5, newer, val_loss=3.5)
    loaded = load_checkpoint(tmp_path / "step-00000005")
    assert loaded.val_loss == 3.5
    assert_identical(loaded.model_state, dict(newer.state_dict()))
    assert sorted(os.listdir(tmp_path)) == ["best.json", "step-00000005"]


def test_corrupt_and_truncated_files_are_named(tmp_path, tiny_config):
    model = make_model(tiny_config)
    save(tmp_path, 1, model, val_loss=4.0)
    latest = save(tmp_path, 2, model, val_loss=3.0)
    weights = latest / "model.safetensors"
    flip_byte(weights, weights.stat().st_size // 2)
    with pytest.raises(CheckpointError, match=f"checkpoint file {weights} is corrupt"):
        load_checkpoint(latest)
    loaded, warnings = load_latest_valid(tmp_path)
    assert loaded.step == 1
    assert len(warnings) == 1 and "step 2" in warnings[0] and "model.safetensors" in warnings[0]

    state = latest / "state.safetensors"
    with open(state, "r+b") as f:
        f.truncate(state.stat().st_size // 2)
    with pytest.raises(CheckpointError, match=f"checkpoint file {state} is corrupt: .* bytes, expected"):
        load_checkpoint(latest, verify=False)  # sizes are checked even without hashing


def test_a_broken_header_is_caught_without_hashing(tmp_path, tiny_config):
    path = save(tmp_path, 1, make_model(tiny_config))
    weights = path / "model.safetensors"
    flip_byte(weights, 3)  # the header length: safetensors itself must refuse it
    with pytest.raises(CheckpointError, match=f"checkpoint file {weights} is corrupt") as info:
        load_checkpoint(path, verify=False)
    assert "\n" not in str(info.value)


def test_leftovers_and_folders_without_manifest_are_ignored_then_cleaned(tmp_path, tiny_config):
    model = make_model(tiny_config)
    save(tmp_path, 1, model)
    (tmp_path / ".tmp-step-00000009-999").mkdir()
    (tmp_path / ".tmp-step-00000009-999" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "step-00000010").mkdir()
    (tmp_path / "step-00000010" / "model.safetensors").write_bytes(b"no manifest")
    assert [info.step for info in list_checkpoints(tmp_path)] == [1]
    assert [(i.step, i.complete) for i in list_checkpoints(tmp_path, include_incomplete=True)] == [(10, False), (1, True)]
    loaded, warnings = load_latest_valid(tmp_path)
    assert loaded.step == 1 and warnings == []
    save(tmp_path, 2, model)
    assert sorted(os.listdir(tmp_path)) == ["step-00000001", "step-00000002"]


def fail_fsync(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def fail_safetensors(monkeypatch):
    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(tensor_files, "save_file", full)


@pytest.mark.parametrize("fail", [fail_fsync, fail_safetensors])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, tiny_config, monkeypatch, fail):
    model = make_model(tiny_config)
    previous = save(tmp_path, 1, model, val_loss=4.0)
    fail(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        save(tmp_path, 2, model, val_loss=3.0)
    assert str(info.value) == (
        f"disk full while saving checkpoint at step 2 in {tmp_path}; the previous checkpoint is intact"
    )
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["best.json", "step-00000001"]
    loaded, warnings = load_latest_valid(tmp_path)
    assert loaded.path == previous and warnings == []


@pytest.mark.timeout(60)
def test_kill_9_while_saving_leaves_the_latest_complete_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 40
        while not (len(list_checkpoints(tmp_path)) >= 2 and any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())):
            assert saver.poll() is None, "the saving process died on its own"
            assert time.monotonic() < deadline, "the saving process made no progress"
            time.sleep(0.002)
        time.sleep(random.uniform(0, 0.2))  # a save takes ~0.2 s: land anywhere in it (or just after)
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    loaded, warnings = load_latest_valid(tmp_path)
    assert warnings == []
    assert loaded.step == latest_checkpoint(tmp_path).step >= 2
    for tensor in [*loaded.model_state.values(), *loaded.training_tensors.values()]:
        assert torch.all(tensor == loaded.step)


def test_load_model_accepts_a_step_a_checkpoints_folder_a_run_or_a_file(tmp_path, tiny_config):
    run = tmp_path / "run"
    model = make_model(tiny_config)
    save(run / "checkpoints", 1, make_model(tiny_config, seed=9))
    step = save(run / "checkpoints", 2, model)
    for where in (step, run / "checkpoints", run, step / "model.safetensors"):
        loaded, notes = load_model(where)
        assert notes == [] and not loaded.training
        assert_identical(dict(loaded.state_dict()), dict(model.state_dict()))


def test_load_model_skips_a_corrupt_latest(tmp_path, tiny_config):
    older = make_model(tiny_config, seed=1)
    save(tmp_path, 1, older)
    latest = save(tmp_path, 2, make_model(tiny_config, seed=2))
    flip_byte(latest / "model.safetensors", 200)
    loaded, notes = load_model(tmp_path)
    assert_identical(dict(loaded.state_dict()), dict(older.state_dict()))
    assert len(notes) == 1 and "step 2" in notes[0]


def test_config_mismatch_adopts_or_refuses(tmp_path, tiny_config):
    path = save(tmp_path, 1, make_model(tiny_config))
    wanted = tiny_config.with_overrides(context_length=64)
    model, notes = load_model(path, expected=wanted, adopt=True)
    assert model.cfg == tiny_config
    assert notes == ["using the checkpoint's config (differs in: context_length 32 != 64)"]
    with pytest.raises(CheckpointError, match="context_length 32 != 64"):
        load_model(path, expected=wanted, adopt=False)


def test_weights_that_do_not_fit_the_config_are_refused_whole(tmp_path, tiny_config):
    weights = dict(make_model(tiny_config).state_dict())
    weights["pos_emb.weight"] = torch.zeros(16, 32)
    del weights["final_norm.scale"]
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, tmp_path / "model.safetensors")
    (tmp_path / "model.json").write_text(json.dumps({"format": 1, **tiny_config.to_dict()}))
    with pytest.raises(CheckpointError, match="model.safetensors does not match the model config") as info:
        load_model(tmp_path / "model.safetensors")
    message = str(info.value)
    assert "missing final_norm.scale" in message and "unexpected extra.weight" in message
    assert "pos_emb.weight has shape [16, 32], expected [32, 32]" in message


def test_bare_weights_need_their_config_and_missing_paths_are_errors(tmp_path, tiny_config):
    save_file(dict(make_model(tiny_config).state_dict()), tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match="no model.json beside"):
        load_model(tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_model(tmp_path / "nowhere")
