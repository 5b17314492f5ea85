"""One way to load a model from what the user named: runs, checkpoints, files, GPT-2 names, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import engine.weights.resolver
from engine.errors import CheckpointError, RunError
from engine.model.gpt import GPTModel
from engine.runs.store import RunStore
from engine.training.checkpointing import save_checkpoint
from engine.weights.resolver import ModelSpec, ResolvedModel, resolve_model


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_presets_fresh_or_by_name_and_unknown_names():
    resolved = resolve_model("gpt-nano")
    assert resolved.model.cfg.emb_dim == 128 and not resolved.model.training
    assert resolved.description.startswith("untrained gpt-nano") and resolved.path is None
    assert resolve_model("fresh:gpt-micro").model.cfg.emb_dim == 256
    with pytest.raises(CheckpointError) as excinfo:
        resolve_model("gpt5")
    message = _one_line_error(excinfo)
    assert "gpt2-medium" in message and "gpt-nano" in message


def test_tui_gpt_checkpoints_go_through_the_checkpoint_loader(tiny_config, tmp_path, monkeypatch):
    seen = []

    def fake_load_model(path, expected=None, adopt=True, device="cpu"):
        seen.append(Path(path))
        return GPTModel(tiny_config), ["a note"]

    monkeypatch.setattr(engine.weights.resolver, "load_model", fake_load_model)
    step = tmp_path / "step-00000120"
    step.mkdir()
    save_file(GPTModel(tiny_config).state_dict(), step / "model.safetensors")
    (step / "model.json").write_text(json.dumps(tiny_config.to_dict()))
    for target in (step, step / "model.safetensors"):
        resolved = resolve_model(str(target))
        assert resolved.description.startswith(f"tui-gpt checkpoint {target}") and resolved.notes == ["a note"]
    assert seen == [step, step / "model.safetensors"]


def _run_with_two_checkpoints(data_dir: Path, tiny_config) -> None:
    run = RunStore(data_dir).create("nano run", {"model": tiny_config.to_dict()})
    for step, val_loss in ((10, 4.5), (20, 5.25)):  # the later one is worse
        torch.manual_seed(step)
        save_checkpoint(run.checkpoints_dir, step, GPTModel(tiny_config), {}, {}, val_loss=val_loss)


def test_a_run_by_name_gives_its_latest_or_its_best_checkpoint(tiny_config, data_dir):
    _run_with_two_checkpoints(data_dir, tiny_config)
    latest = resolve_model(ModelSpec("nano run", kind="run", data_dir=data_dir))
    best = resolve_model(ModelSpec("nano run", kind="run", best=True, data_dir=data_dir))
    assert latest.description == "run nano run at step 20, val loss 5.250"
    assert best.description == "run nano run at step 10, val loss 4.500"
    assert latest.path.name == "step-00000020" and best.path.name == "step-00000010"
    torch.manual_seed(10)
    assert torch.equal(best.model.tok_emb.weight, GPTModel(tiny_config).tok_emb.weight)


def test_a_run_that_is_missing_or_has_no_checkpoint_says_so(data_dir):
    with pytest.raises(RunError, match="no run named ghost"):
        resolve_model(ModelSpec("ghost", kind="run", data_dir=data_dir))
    RunStore(data_dir).create("empty", {})
    with pytest.raises(CheckpointError, match="run 'empty' has no best checkpoint yet"):
        resolve_model(ModelSpec("empty", kind="run", best=True, data_dir=data_dir))


def test_a_checkpoint_spec_is_only_read_as_a_tui_gpt_checkpoint(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint at gpt-nano"):
        resolve_model(ModelSpec("gpt-nano", kind="checkpoint"))
    torch.save(GPTModel(tiny_config).state_dict(), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="model.pth is not a .safetensors weights file"):
        resolve_model(ModelSpec(str(tmp_path / "model.pth"), kind="checkpoint"))


def test_an_existing_file_of_another_kind_is_refused_not_taken_for_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("gpt-nano").write_text("not weights")
    with pytest.raises(CheckpointError, match="cannot load a suffix-less file"):
        resolve_model("gpt-nano")
    assert resolve_model("fresh:gpt-nano").description.startswith("untrained gpt-nano")


def test_a_new_source_is_one_entry_in_the_list(tiny_config, monkeypatch):
    class Stub:
        def recognises(self, spec: ModelSpec) -> bool:
            return spec.text.endswith(".stub")

        def load(self, spec: ModelSpec, device) -> ResolvedModel:
            return ResolvedModel(GPTModel(tiny_config).eval(), f"stub weights from {spec.text}")

    monkeypatch.setattr(engine.weights.resolver, "SOURCES", (Stub(), *engine.weights.resolver.SOURCES))
    assert resolve_model("weights.stub").description == "stub weights from weights.stub"
    assert resolve_model("gpt-nano").description.startswith("untrained gpt-nano")
