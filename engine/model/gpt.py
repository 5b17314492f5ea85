"""The GPT-2-style model of the book's chapter 4, with the book's parameter names.

Modules are built in the book's order so that `torch.manual_seed(s)` gives the
book's initial weights. Attention runs through `scaled_dot_product_attention`
(fused kernels) and takes an optional key/value cache for incremental decoding.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from engine.model.config import GPTConfig, as_config


class LayerNorm(nn.Module):
    """Pre-norm with a learned scale and shift, named as in the book."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU with the tanh approximation that GPT-2 was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            GELU(),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class KVCache:
    """Per-layer keys and values of the tokens already seen, for one batch.

    Preallocated to `capacity` positions so decoding appends in place.
    `length` is how many positions are filled; it is also the absolute position
    of the next token, which the model needs for its position embeddings.
    """

    def __init__(self, model: "GPTModel", batch_size: int, capacity: int | None = None):
        cfg = model.cfg
        self.capacity = capacity or cfg.context_length
        self.batch_size = batch_size
        param = model.tok_emb.weight
        shape = (batch_size, cfg.n_heads, self.capacity, cfg.head_dim)
        self.keys = [self._buffer(shape, param) for _ in range(cfg.n_layers)]
        self.values = [self._buffer(shape, param) for _ in range(cfg.n_layers)]
        self.length = 0
        self._mask: torch.Tensor | None = None  # of the forward pass under way (`begin`)

    @staticmethod
    def _buffer(shape, like: torch.Tensor) -> torch.Tensor:
        return torch.empty(shape, device=like.device, dtype=like.dtype)

    def reset(self) -> None:
        self.rewind(0)

    def rewind(self, length: int) -> None:
        """Forget every position from `length` on (their buffers are overwritten before they are read)."""
        self.length = length

    def begin(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """Start a forward pass over `seq_len` new tokens and return their absolute positions.

        What every layer's `extend` needs of them (the attention mask) is made here, once per
        pass rather than once per layer.
        """
        start = self.length
        # A chunk after a filled cache: each query sees the past and its own prefix.
        self._mask = (torch.ones(seq_len, start + seq_len, dtype=torch.bool, device=device).tril(diagonal=start)
                      if start and seq_len > 1 else None)
        return torch.arange(start, start + seq_len, device=device)

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new tokens' keys and values of `layer`; return the keys and values their
        queries attend to, with the attention mask and `is_causal` for scaled_dot_product_attention."""
        b, _, t, _ = k.shape
        start = self.length
        self.keys[layer][:b, :, start : start + t] = k
        self.values[layer][:b, :, start : start + t] = v
        keys, values = self.keys[layer][:b, :, : start + t], self.values[layer][:b, :, : start + t]
        # Causal among the new tokens when there is no past; a single new query sees every cached position.
        return keys, values, self._mask, not start and t > 1

    def advance(self, seq_len: int) -> None:
        self.length += seq_len


class StaticKVCache(KVCache):
    """A cache whose shapes never change, so that a decoding step can be replayed as a CUDA graph
    (engine.model.cuda_graph).

    The next position also lives in a device tensor, which a replayed step reads and advances on
    the GPU, and every query attends over the whole capacity with the unwritten positions masked
    out. The buffers start zeroed: a masked-out NaN would still poison the weighted sum of values.
    """

    def __init__(self, model: "GPTModel", batch_size: int, capacity: int | None = None):
        super().__init__(model, batch_size, capacity)
        self.position = torch.zeros((), dtype=torch.long, device=model.tok_emb.weight.device)
        self._rows: torch.Tensor | None = None  # the new tokens' positions in the pass under way

    @staticmethod
    def _buffer(shape, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, device=like.device, dtype=like.dtype)

    def rewind(self, length: int) -> None:
        super().rewind(length)
        self.position.fill_(length)

    def begin(self, seq_len: int, device: torch.device) -> torch.Tensor:
        self._rows = self.position + torch.arange(seq_len, device=device)
        self._mask = torch.arange(self.capacity, device=device) <= self._rows[:, None]
        return self._rows

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        self.keys[layer].index_copy_(2, self._rows, k)
        self.values[layer].index_copy_(2, self._rows, v)
        return self.keys[layer], self.values[layer], self._mask, False

    def advance(self, seq_len: int) -> None:
        super().advance(seq_len)
        self.position += seq_len


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        if d_out % num_heads:
            raise ValueError("d_out must be divisible by num_heads")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x, kv_cache: KVCache | None = None, layer: int = 0):
        b, t, _ = x.shape
        q, k, v = self._heads(self.W_query(x)), self._heads(self.W_key(x)), self._heads(self.W_value(x))
        mask, is_causal = None, t > 1
        if kv_cache is not None:
            k, v, mask, is_causal = kv_cache.extend(layer, k, v)
        drop = self.dropout.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=is_causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, self.d_out))


def explicit_attention(q, k, v, dropout: nn.Module | None = None) -> torch.Tensor:
    """The book's masked-softmax attention, kept to check the fused path against."""
    t_q, t_k = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1)
    mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).triu(diagonal=t_k - t_q + 1)
    scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores / math.sqrt(k.shape[-1]), dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg.emb_dim,
            d_out=cfg.emb_dim,
            context_length=cfg.context_length,
            num_heads=cfg.n_heads,
            dropout=cfg.drop_rate,
            qkv_bias=cfg.qkv_bias,
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x, kv_cache: KVCache | None = None, layer: int = 0):
        x = x + self.drop_shortcut(self.att(self.norm1(x), kv_cache, layer))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    def __init__(self, cfg: GPTConfig | Mapping[str, Any]):
        super().__init__()
        cfg = as_config(cfg)
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight

    def forward(self, in_idx: torch.Tensor, kv_cache: KVCache | None = None, last_only: bool = False,
                hidden_only: bool = False) -> torch.Tensor:
        """Logits for every position, or with `last_only` for the last one (all that decoding needs).

        `hidden_only` returns the final norm's output instead, for a loss that applies the
        output head itself (engine.fast.chunked_loss, which never holds every logit at once).
        """
        _, seq_len = in_idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + seq_len > self.cfg.context_length:
            raise ValueError(
                f"sequence of {start + seq_len} tokens exceeds the context length {self.cfg.context_length}"
            )
        if kv_cache is None:
            positions = torch.arange(seq_len, device=in_idx.device)
        else:
            positions = kv_cache.begin(seq_len, in_idx.device)
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(positions))
        for layer, block in enumerate(self.trf_blocks):
            x = block(x, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.advance(seq_len)
        if last_only:
            x = x[:, -1:, :]
        x = self.final_norm(x)
        return x if hidden_only else self.out_head(x)

    def num_parameters(self) -> int:
        """Distinct parameters; tied weights count once."""
        return sum(p.numel() for p in self.parameters())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # The book registers its causal mask as a buffer, so its model.pth files
        # carry `trf_blocks.N.att.mask`; it holds no weights, so drop it.
        state_dict = {k: v for k, v in state_dict.items() if not _is_book_mask(k)}
        if self.cfg.tie_embeddings and "out_head.weight" not in state_dict and "tok_emb.weight" in state_dict:
            state_dict["out_head.weight"] = state_dict["tok_emb.weight"]
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if self.cfg.tie_embeddings and assign:
            self.out_head.weight = self.tok_emb.weight
        return result


def _is_book_mask(key: str) -> bool:
    parts = key.split(".")
    return len(parts) == 4 and parts[0] == "trf_blocks" and parts[2] == "att" and parts[3] == "mask"


class _SkipRandomInit(TorchFunctionMode):
    """Skips the random initialisation of meta tensors, which hold no values anyway.

    On the meta device torch routes normal_ through torch._refs, whose first use
    imports torch._dynamo: about 2 s and 70 MB for nothing.
    """

    _INITS = {"normal_", "uniform_", "kaiming_uniform_"}  # what GPTModel's layers call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensor = args[0] if args else kwargs.get("tensor")
        if getattr(func, "__name__", None) in self._INITS and isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor
        return func(*args, **kwargs)


def meta_model(cfg: GPTConfig | Mapping[str, Any]) -> GPTModel:
    """A GPTModel whose parameters have shapes but no memory, to be filled by
    `load_state_dict(..., assign=True)` without allocating random weights first."""
    with torch.device("meta"), _SkipRandomInit():
        return GPTModel(cfg)
