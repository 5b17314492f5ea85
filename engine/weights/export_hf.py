"""A GPTModel as a Hugging Face GPT-2 folder: transformers loads it with no network, and so does tui-gpt.

    OUT/config.json            GPT2LMHeadModel's config (tie_word_embeddings as the model has it)
    OUT/model.safetensors      the weights under GPT-2's names (engine.weights.gpt2_tensors)
    OUT/vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
    OUT/README.md              the model card

The book's model has no query/key/value biases; GPT-2 always has them, so they
are written as zeros, which compute the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import ConfigError
from engine.model.gpt import GPTModel
from engine.model.tokenizer import END_OF_TEXT_ID
from engine.weights.export_target import writing
from engine.weights.gpt2_tensors import to_gpt2_tensors
from engine.weights.gpt2_tokenizer_files import VOCAB_SIZE, write_tokenizer_files
from engine.weights.model_card import ModelCard
from engine.weights.gpt2 import CONFIG_FILE, WEIGHTS_FILE
from engine.weights.tensor_files import save_tensors


def hf_config(model: GPTModel) -> dict:
    cfg = model.cfg
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": None,  # 4 x n_embd, as GPTModel's feed-forward
        "activation_function": "gelu_new",  # GELU's tanh approximation
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg.drop_rate,
        "embd_pdrop": cfg.drop_rate,
        "attn_pdrop": cfg.drop_rate,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": END_OF_TEXT_ID,
        "eos_token_id": END_OF_TEXT_ID,
        "torch_dtype": str(model.tok_emb.weight.dtype).removeprefix("torch."),
        "use_cache": True,
    }


def require_gpt2_vocabulary(model: GPTModel) -> None:
    """ConfigError unless the model's vocabulary is GPT-2's, which the exported tokenizer describes."""
    if model.cfg.vocab_size != VOCAB_SIZE:
        raise ConfigError(f"the model has a vocabulary of {model.cfg.vocab_size:,} tokens, not GPT-2's {VOCAB_SIZE:,}: "
                          "its tokenizer cannot be exported")


def export_hf(model: GPTModel, out: Path, card: ModelCard, force: bool = False) -> Path:
    """Write the folder `out` (see the module docstring); returns it."""
    require_gpt2_vocabulary(model)
    with writing(Path(out), force) as folder:
        folder.mkdir()
        (folder / CONFIG_FILE).write_text(json.dumps(hf_config(model), indent=2) + "\n", encoding="utf-8")
        tensors = {f"transformer.{name}" if name != "lm_head.weight" else name: tensor
                   for name, tensor in to_gpt2_tensors(model).items()}
        save_tensors(tensors, folder / WEIGHTS_FILE)
        write_tokenizer_files(folder, model.cfg.context_length)
        (folder / "README.md").write_text(card.markdown(_usage(Path(out))), encoding="utf-8")
    return Path(out)


def _usage(out: Path) -> str:
    return f"""## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{out.name}")
model = AutoModelForCausalLM.from_pretrained("{out.name}")
ids = tokenizer("Every effort moves you", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=30, do_sample=False)[0]))
```

Or with tui-gpt: `tui-gpt generate --model {out.name} --prompt "Every effort moves you"`."""
