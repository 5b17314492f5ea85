"""Sharding a model across torchrun's ranks with FSDP2 (`--fsdp`), for models larger than one GPU.

Each transformer block, and then the whole model, is a `fully_shard` unit: a
rank holds 1/world_size of every parameter, gradient and AdamW moment, and
gathers a block's weights only while that block runs. Checkpoints stay those
of one process: the full state is gathered to rank 0 in the layout that
`model.state_dict()` and `optimizer.state_dict()` give without sharding, so a
run saved under FSDP resumes under DDP or on one process, and the other way round.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

from engine.model.gpt import GPTModel

# Gathered into CPU memory on rank 0 alone (the others get empty dicts): the full state never
# has to fit on one GPU.
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
# Every rank holds the checkpoint it read; each keeps its own shard of it.
_LOAD = StateDictOptions(full_state_dict=True)


def shard_model(model: GPTModel) -> GPTModel:
    """The model sharded in place (its class becomes an FSDP subclass; names and forward are unchanged)."""
    for block in model.trf_blocks:
        fully_shard(block)
    fully_shard(model)  # the embeddings, final norm and (tied) output head
    return model


def full_model_state(model: GPTModel) -> dict[str, torch.Tensor]:
    """The whole model's state dict on rank 0 (on CPU), empty on the others; every rank must call it."""
    return get_model_state_dict(model, options=_GATHER)


def full_optimizer_state(model: GPTModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()` as one process would have it, on rank 0; every rank must call it.

    torch.distributed.checkpoint names each parameter's state by its name; the
    optimizer's own state dict, which DDP checkpoints hold, numbers them in the
    order of `model.parameters()`.
    """
    gathered = get_optimizer_state_dict(model, optimizer, options=_GATHER)
    if not gathered:
        return {}
    number = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    return {
        "state": {number[name]: state for name, state in gathered["state"].items() if name in number},
        "param_groups": [{**group, "params": [number[name] for name in group["params"] if name in number]}
                         for group in gathered["param_groups"]],
    }


def load_full_state(model: GPTModel, optimizer: torch.optim.Optimizer, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any]) -> None:
    """Give each rank its shard of a checkpoint's full model and optimizer state (read on every rank)."""
    model_state = dict(model_state)
    if model.cfg.tie_embeddings and "out_head.weight" not in model_state:
        model_state["out_head.weight"] = model_state["tok_emb.weight"]  # checkpoints store the tied weight once
    set_model_state_dict(model, model_state, options=_LOAD)
    name = [name for name, _ in model.named_parameters()]
    by_name = {
        "state": {name[int(i)]: state for i, state in optimizer_state["state"].items()},
        "param_groups": [{**group, "params": [name[int(i)] for i in group["params"]]}
                         for group in optimizer_state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=_LOAD)
