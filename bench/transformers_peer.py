"""Hugging Face transformers' GPT2LMHeadModel with the engine model's weights.

The copy keeps the output head untied from the token embedding, as the book's
model is, so both models hold and update the same parameters. Hugging Face
stores its projections as Conv1D (input-major) matrices and fuses the query,
key and value weights into one `c_attn`; the copy transposes and concatenates.
GPT-2's `c_attn` always has a bias: a model without `qkv_bias` gets a frozen zero one.
"""

from __future__ import annotations

import importlib.util

import torch

from engine.model.gpt import GPTModel


def transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


def to_transformers(model: GPTModel, attn_implementation: str | None = None):
    """A GPT2LMHeadModel computing the same function as `model`, in its train/eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hf_cfg = GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.emb_dim,
        n_layer=cfg.n_layers, n_head=cfg.n_heads, resid_pdrop=cfg.drop_rate, embd_pdrop=cfg.drop_rate,
        attn_pdrop=cfg.drop_rate, layer_norm_epsilon=1e-5, activation_function="gelu_new",
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    if attn_implementation is not None:
        hf_cfg._attn_implementation = attn_implementation
    param = model.tok_emb.weight
    hf = GPT2LMHeadModel(hf_cfg).to(device=param.device, dtype=param.dtype)
    hf.load_state_dict(_transformers_state(model), strict=True)
    if not cfg.qkv_bias:
        # Train only the parameters the engine's model has.
        for block in hf.transformer.h:
            block.attn.c_attn.bias.requires_grad_(False)
    hf.train(model.training)
    return hf


def _transformers_state(model: GPTModel) -> dict[str, torch.Tensor]:
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {
        "transformer.wte.weight": sd["tok_emb.weight"],
        "transformer.wpe.weight": sd["pos_emb.weight"],
        "transformer.ln_f.weight": sd["final_norm.scale"],
        "transformer.ln_f.bias": sd["final_norm.shift"],
        "lm_head.weight": sd["out_head.weight"],
    }
    for i in range(model.cfg.n_layers):
        ours, theirs = f"trf_blocks.{i}.", f"transformer.h.{i}."
        qkv = [ours + f"att.{name}" for name in ("W_query", "W_key", "W_value")]
        out[theirs + "attn.c_attn.weight"] = torch.cat([sd[p + ".weight"].t() for p in qkv], dim=1)
        if model.cfg.qkv_bias:
            out[theirs + "attn.c_attn.bias"] = torch.cat([sd[p + ".bias"] for p in qkv])
        else:
            out[theirs + "attn.c_attn.bias"] = torch.zeros(3 * model.cfg.emb_dim, dtype=sd[qkv[0] + ".weight"].dtype)
        for hf_name, book_name in (("attn.c_proj", "att.out_proj"), ("mlp.c_fc", "ff.layers.0"),
                                   ("mlp.c_proj", "ff.layers.2")):
            out[theirs + hf_name + ".weight"] = sd[ours + book_name + ".weight"].t()
            out[theirs + hf_name + ".bias"] = sd[ours + book_name + ".bias"]
        for hf_name, book_name in (("ln_1", "norm1"), ("ln_2", "norm2")):
            out[theirs + hf_name + ".weight"] = sd[ours + book_name + ".scale"]
            out[theirs + hf_name + ".bias"] = sd[ours + book_name + ".shift"]
    return {k: v.contiguous() for k, v in out.items()}


def transformers_generate(hf_model, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding with Hugging Face's cached `generate`, never stopping early."""
    return hf_model.generate(
        idx, attention_mask=torch.ones_like(idx), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
        do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0,
    )
