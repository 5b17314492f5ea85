"""tui-gpt's engine: the book's GPT model, tokenizer, data, loss, generation and training.

Usable on its own, with the book's names:
    from engine import GPTModel, generate_text_simple, calc_loss_loader, create_dataloader_v1

The names resolve lazily (PEP 562): `import engine.runs` or `import engine.errors`
loads no torch; torch is imported when a name that needs it is first used.

    engine/model/     the book's GPT: config and presets, model, tokenizer, generation
    engine/fast/      speed-ups kept apart from the book's core: decoding copies, allocator
    engine/data/      corpora, the token cache, the book's sliding-window loader
    engine/training/  settings, loss, schedule, the loop, a whole run, devices, torchrun
    engine/runs/      the run-folder contract (no torch): store, lock, events and their progress, summaries,
                      checkpoint files, exit codes, untrusted-file reading
    engine/weights/   where a model's weights come from: one resolver over tui-gpt checkpoints, GPT-2, the book's .pth
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it.
_EXPORTS = {
    "GPTConfig": "engine.model.config", "PRESETS": "engine.model.config", "get_preset": "engine.model.config",
    "GPTModel": "engine.model.gpt", "MultiHeadAttention": "engine.model.gpt", "TransformerBlock": "engine.model.gpt",
    "FeedForward": "engine.model.gpt", "GELU": "engine.model.gpt", "LayerNorm": "engine.model.gpt",
    "KVCache": "engine.model.gpt",
    "get_tokenizer": "engine.model.tokenizer", "text_to_token_ids": "engine.model.tokenizer",
    "token_ids_to_text": "engine.model.tokenizer",
    "generate_text_simple": "engine.model.generation", "generate": "engine.model.generation",
    "stream": "engine.model.generation", "StreamedToken": "engine.model.generation",
    "GPTDatasetV1": "engine.data.windows", "TokenWindowDataset": "engine.data.windows",
    "create_dataloader_v1": "engine.data.windows", "split_train_val": "engine.data.windows",
    "calc_loss_batch": "engine.training.loss", "calc_loss_loader": "engine.training.loss",
    "perplexity": "engine.training.loss",
    "train_model_simple": "engine.training.loop", "evaluate_model": "engine.training.loop",
    "generate_sample": "engine.training.loop",
    "GPT2_SIZES": "engine.weights.gpt2", "available_gpt2_models": "engine.weights.gpt2",
    "load_gpt2": "engine.weights.gpt2", "load_book_state_dict": "engine.weights.book",
    "resolve_model": "engine.weights.resolver", "ModelSpec": "engine.weights.resolver",
    "TuiGptError": "engine.errors", "ConfigError": "engine.errors", "CorpusError": "engine.errors",
    "CheckpointError": "engine.errors", "RunError": "engine.errors",
}

__all__ = sorted([*_EXPORTS, "GPT_CONFIG_124M"])


def __getattr__(name: str) -> Any:
    if name == "GPT_CONFIG_124M":
        from engine.model.config import book_config_dict

        return book_config_dict("gpt2-small")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from engine.data.windows import GPTDatasetV1, TokenWindowDataset, create_dataloader_v1, split_train_val
    from engine.errors import CheckpointError, ConfigError, CorpusError, RunError, TuiGptError
    from engine.model.config import PRESETS, GPTConfig, get_preset
    from engine.model.generation import StreamedToken, generate, generate_text_simple, stream
    from engine.model.gpt import GELU, FeedForward, GPTModel, KVCache, LayerNorm, MultiHeadAttention, TransformerBlock
    from engine.model.tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text
    from engine.training.loop import evaluate_model, generate_sample, train_model_simple
    from engine.training.loss import calc_loss_batch, calc_loss_loader, perplexity
    from engine.weights.book import load_book_state_dict
    from engine.weights.gpt2 import GPT2_SIZES, available_gpt2_models, load_gpt2
    from engine.weights.resolver import ModelSpec, resolve_model

    GPT_CONFIG_124M: dict[str, Any]
