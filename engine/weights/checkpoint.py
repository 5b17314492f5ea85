"""A GPTModel from a tui-gpt checkpoint: a checkpoint folder, a run's folder, or a model.safetensors."""

from __future__ import annotations

from pathlib import Path

import torch

from engine.errors import CheckpointError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.runs.checkpoints import MODEL_CONFIG, find_model_weights, read_model_config
from engine.weights.tensor_files import check_model_state, load_tensors, model_from_state


def load_model(
    path: str | Path, expected: GPTConfig | None = None, adopt: bool = True, device: str | torch.device = "cpu"
) -> tuple[GPTModel, list[str]]:
    """A GPTModel (in eval mode) from a checkpoint folder, a run's checkpoints, or a model.safetensors.

    If `expected` differs from the stored config, the stored one is used when `adopt`
    (with a note saying so), else CheckpointError. Weights load all or nothing.
    """
    notes: list[str] = []
    weights_file = find_model_weights(Path(path), notes)
    config = read_model_config(weights_file.with_name(MODEL_CONFIG))
    if expected is not None and expected != config:
        differences = ", ".join(
            f"{name} {stored!r} != {wanted!r}"
            for name, stored in config.to_dict().items()
            if stored != (wanted := getattr(expected, name))
        )
        if not adopt:
            raise CheckpointError(f"checkpoint {weights_file.parent} has a different model config ({differences})")
        notes.append(f"using the checkpoint's config (differs in: {differences})")
    state = load_tensors(weights_file, device)
    check_model_state(config, state, weights_file)
    return model_from_state(config, state, device, weights_file), notes
