"""The book's chapter-4 model and greedy loop, written with its explicit formulas.

This is the speed the book's code reaches: separate query/key/value products,
a registered causal mask applied with `masked_fill` before a softmax,
hand-written LayerNorm and GELU, and a generation loop that runs the whole
window through the model for every new token and computes logits for every
position. Parameter names and creation order match `engine.model.gpt.GPTModel`,
so one state dict loads into either.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from engine.model.config import GPTConfig


class TextbookLayerNorm(nn.Module):
    def __init__(self, emb_dim: int):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * ((x - mean) / torch.sqrt(var + self.eps)) + self.shift


class TextbookGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class TextbookAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.emb_dim
        self.num_heads = cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.W_query = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.drop_rate)
        # The book saves this mask with the weights; it is not saved here so that
        # the engine's state dicts load unchanged. That costs nothing at run time.
        mask = torch.triu(torch.ones(cfg.context_length, cfg.context_length), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        queries = self.W_query(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        scores = queries @ keys.transpose(2, 3)
        scores.masked_fill_(self.mask.bool()[:t, :t], -torch.inf)
        weights = self.dropout(torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1))
        context = (weights @ values).transpose(1, 2).contiguous().view(b, t, d)
        return self.out_proj(context)


class TextbookFeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            TextbookGELU(),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TextbookBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.att = TextbookAttention(cfg)
        self.ff = TextbookFeedForward(cfg)
        self.norm1 = TextbookLayerNorm(cfg.emb_dim)
        self.norm2 = TextbookLayerNorm(cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class TextbookGPT(nn.Module):
    """The book's `GPTModel`; untied output head, as in the book."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.Sequential(*[TextbookBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = TextbookLayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(in_idx.shape[1], device=in_idx.device)
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(positions))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


def textbook_generate_text_simple(model: nn.Module, idx: torch.Tensor, max_new_tokens: int,
                                  context_size: int) -> torch.Tensor:
    """The book's greedy loop: the whole cropped window through the model for every token."""
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(idx[:, -context_size:])[:, -1, :]
        next_id = torch.argmax(torch.softmax(logits, dim=-1), dim=-1, keepdim=True)
        idx = torch.cat((idx, next_id), dim=1)
    return idx
