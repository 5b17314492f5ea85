"""nanoGPT's checkpoints (the `ckpt.pt` its train.py saves) as a GPTModel.

The file is a torch.save'd dict: `model_args` (n_layer, n_head, n_embd,
block_size, bias, vocab_size, dropout), `model` (the GPT's state dict under
GPT-2's names with nn.Linear's layout, each name prefixed with `_orig_mod.` when
the model was compiled), `iter_num`, `best_val_loss`, `config`, `optimizer`.
It is read with weights_only=True: plain containers and tensors only, never
arbitrary objects.

nanoGPT pads GPT-2's vocabulary of 50,257 to 50,304 for speed; the padding
rows are never a target, so they are cropped and the logits of the real tokens
stay the same. With `bias=False` nanoGPT has no biases at all; GPTModel's
layer norms and projections always have them, so they are set to zero.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from engine.errors import CheckpointError, ConfigError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.weights.gpt2_tensors import from_gpt2_tensors, transpose_conv1d

GPT2_VOCAB_SIZE = 50257
_COMPILED_PREFIX = "_orig_mod."
_MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def is_nanogpt_checkpoint(path: Path) -> bool:
    """Whether `path` holds a nanoGPT checkpoint; False for anything unreadable (its own loader will say why)."""
    try:
        loaded = _torch_load(path)
    except CheckpointError:
        return False
    return isinstance(loaded, Mapping) and "model_args" in loaded and "model" in loaded


def load_nanogpt(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPTModel, str]:
    """A GPTModel (eval mode) and a one-line description of what was loaded."""
    path = Path(path).expanduser()
    loaded = _torch_load(path)
    if not (isinstance(loaded, Mapping) and isinstance(loaded.get("model_args"), Mapping)
            and isinstance(loaded.get("model"), Mapping)):
        raise CheckpointError(f"{path} is not a nanoGPT checkpoint (a dict with model_args and model)")
    args = loaded["model_args"]
    missing = [key for key in _MODEL_ARGS if not isinstance(args.get(key), int)]
    if missing:
        raise CheckpointError(f"{path}: nanoGPT's model_args lack {', '.join(missing)}")
    state = {name.removeprefix(_COMPILED_PREFIX).removeprefix("transformer."): tensor
             for name, tensor in loaded["model"].items()}
    # Without flash attention nanoGPT registers its causal mask as a buffer named `attn.bias`.
    state = {name: t for name, t in state.items() if not name.endswith(".attn.bias") and isinstance(t, torch.Tensor)}
    if "wte.weight" not in state:
        raise CheckpointError(f"{path} holds no transformer.wte.weight: not a nanoGPT model")

    padded = args["vocab_size"]
    vocab = min(padded, GPT2_VOCAB_SIZE)
    head = state.pop("lm_head.weight", None)
    tied = head is None or head.data_ptr() == state["wte.weight"].data_ptr() or torch.equal(head, state["wte.weight"])
    state["wte.weight"] = state["wte.weight"][:vocab]
    if not tied:
        state["lm_head.weight"] = head[:vocab]
    has_bias = bool(args.get("bias", True))
    if not has_bias:
        _add_zero_biases(state, args["n_layer"], args["n_embd"])
    try:
        cfg = GPTConfig(vocab_size=vocab, context_length=args["block_size"], emb_dim=args["n_embd"],
                        n_heads=args["n_head"], n_layers=args["n_layer"], drop_rate=0.0, qkv_bias=has_bias,
                        tie_embeddings=tied)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    model = from_gpt2_tensors(cfg, transpose_conv1d(state), path, device)
    return model, _description(path, loaded, model, padded)


def _add_zero_biases(state: dict[str, torch.Tensor], n_layer: int, n_embd: int) -> None:
    """The biases a bias=False nanoGPT lacks (not the query/key/value ones: GPTModel can do without those)."""
    dtype = state["wte.weight"].dtype
    sizes = {"ln_f.bias": n_embd}
    for i in range(n_layer):
        sizes |= {f"h.{i}.ln_1.bias": n_embd, f"h.{i}.ln_2.bias": n_embd, f"h.{i}.attn.c_proj.bias": n_embd,
                  f"h.{i}.mlp.c_fc.bias": 4 * n_embd, f"h.{i}.mlp.c_proj.bias": n_embd}
    for name, size in sizes.items():
        state.setdefault(name, torch.zeros(size, dtype=dtype))


def _description(path: Path, loaded: Mapping[str, Any], model: GPTModel, padded_vocab: int) -> str:
    facts = [f"{model.num_parameters() / 1e6:.0f}M parameters"]
    if isinstance(loaded.get("iter_num"), int):
        facts.append(f"iteration {loaded['iter_num']:,}")
    best = loaded.get("best_val_loss")
    if isinstance(best, (int, float, torch.Tensor)):
        facts.append(f"best val loss {float(best):.3f}")
    if padded_vocab != model.cfg.vocab_size:
        facts.append(f"vocabulary cropped from nanoGPT's padded {padded_vocab:,} to GPT-2's {model.cfg.vocab_size:,}")
    elif padded_vocab != GPT2_VOCAB_SIZE:
        facts.append(f"its own vocabulary of {padded_vocab:,} tokens, not GPT-2's: tui-gpt's tokenizer does not fit it")
    return f"nanoGPT checkpoint {path} ({'; '.join(facts)})"


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        # mmap: the optimizer's moments, twice the model's size, are never read in.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled Python objects, not just tensors; "
                              "refused to load it, since unpickling them could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {reason}") from None
