"""GPTModel against the book: seeded outputs, parameter names, model.pth files, attention paths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.model.config import PRESETS, GPTConfig
from engine.model.generation import generate_text_simple
from engine.model.gpt import GPTModel, KVCache, StaticKVCache, explicit_attention
from engine.model.tokenizer import get_tokenizer, text_to_token_ids, token_ids_to_text

# ---------------------------------------------------------------------------
# A reference implementation of the book's chapter 4 architecture, kept
# deliberately plain: explicit masked softmax attention with the registered
# `mask` buffer, hand-written LayerNorm and GELU. Modules are created in the
# book's order, which fixes the order in which the seeded RNG initialises them.
# ---------------------------------------------------------------------------


class BookMultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, n, _ = x.shape

        def split(t):
            return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

        keys, queries, values = split(self.W_key(x)), split(self.W_query(x)), split(self.W_value(x))
        scores = queries @ keys.transpose(2, 3)
        scores.masked_fill_(self.mask.bool()[:n, :n], -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)
        context = (weights @ values).transpose(1, 2).contiguous().view(b, n, self.d_out)
        return self.out_proj(context)


class BookLayerNorm(nn.Module):
    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class BookGELU(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class BookFeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]), BookGELU(), nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"])
        )

    def forward(self, x):
        return self.layers(x)


class BookTransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.att = BookMultiHeadAttention(
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"],
        )
        self.ff = BookFeedForward(cfg)
        self.norm1 = BookLayerNorm(cfg["emb_dim"])
        self.norm2 = BookLayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        x = x + self.drop_shortcut(self.att(self.norm1(x)))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class BookGPTModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[BookTransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = BookLayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        n = in_idx.shape[1]
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(torch.arange(n, device=in_idx.device)))
        return self.out_head(self.final_norm(self.trf_blocks(x)))


# ---------------------------------------------------------------------------

SMALL = GPTConfig(vocab_size=300, context_length=24, emb_dim=48, n_heads=4, n_layers=2, drop_rate=0.1)


def _both_models(cfg: GPTConfig, seed: int = 7) -> tuple[GPTModel, BookGPTModel]:
    torch.manual_seed(seed)
    ours = GPTModel(cfg)
    torch.manual_seed(seed)
    book = BookGPTModel(cfg.to_dict())
    return ours, book


def _tokens(cfg: GPTConfig, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "seed, expected_ids, expected_text",
    [
        (100, [15496, 11, 314, 716, 1908, 41574, 14356, 11426, 42884, 32296],
         "Hello, I am sent agitated AW telephone Tomas shroud"),
        # The output printed in the book's chapter 4.
        (123, [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267],
         "Hello, I am Featureiman Byeswickattribute argue"),
    ],
)
def test_seeded_124m_model_generates_the_known_greedy_tokens(seed, expected_ids, expected_text):
    tokenizer = get_tokenizer()
    torch.manual_seed(seed)
    model = GPTModel(PRESETS["gpt2-small"]).eval()
    assert model.num_parameters() == 163_009_536  # as the book prints for GPTModel
    out = generate_text_simple(model, text_to_token_ids("Hello, I am", tokenizer), 6, 1024)
    assert out.tolist() == [expected_ids]
    assert token_ids_to_text(out, tokenizer) == expected_text


def test_book_dict_config_reproduces_the_chapter_5_untrained_output():
    # Chapter 5 builds the model from its plain dict, with the context shortened to 256.
    book_config = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12,
                   "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False}
    tokenizer = get_tokenizer()
    torch.manual_seed(123)
    model = GPTModel(book_config).eval()
    out = generate_text_simple(model, text_to_token_ids("Every effort moves you", tokenizer), 10, 256)
    assert token_ids_to_text(out, tokenizer) == "Every effort moves you rentingetic wasnم refres RexMeCHicular stren"


def test_state_dict_uses_the_book_parameter_names():
    cfg = GPTConfig(vocab_size=100, context_length=8, emb_dim=8, n_heads=2, n_layers=2, qkv_bias=True)
    names = set(GPTModel(cfg).state_dict())
    for expected in [
        "tok_emb.weight", "pos_emb.weight",
        "trf_blocks.0.att.W_query.weight", "trf_blocks.0.att.W_query.bias",
        "trf_blocks.0.att.W_key.weight", "trf_blocks.0.att.W_value.weight",
        "trf_blocks.0.att.out_proj.weight", "trf_blocks.0.att.out_proj.bias",
        "trf_blocks.0.ff.layers.0.weight", "trf_blocks.0.ff.layers.0.bias",
        "trf_blocks.0.ff.layers.2.weight", "trf_blocks.1.ff.layers.2.bias",
        "trf_blocks.0.norm1.scale", "trf_blocks.0.norm1.shift",
        "trf_blocks.1.norm2.scale", "trf_blocks.1.norm2.shift",
        "final_norm.scale", "final_norm.shift", "out_head.weight",
    ]:
        assert expected in names, expected
    assert "out_head.bias" not in names
    # Everything else in the book's state_dict is its mask buffer, which we do not keep.
    book_names = set(BookGPTModel(cfg.to_dict()).state_dict())
    assert book_names - names == {"trf_blocks.0.att.mask", "trf_blocks.1.att.mask"}


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_same_seed_gives_the_book_initial_parameters(qkv_bias):
    ours, book = _both_models(SMALL.with_overrides(qkv_bias=qkv_bias))
    book_params = dict(book.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert ours_params.keys() == book_params.keys()
    for name, param in ours_params.items():
        assert torch.equal(param, book_params[name]), name


def test_book_model_pth_loads_and_gives_the_book_logits(tmp_path):
    torch.manual_seed(3)
    book = BookGPTModel(SMALL.to_dict()).eval()
    path = tmp_path / "model.pth"
    torch.save(book.state_dict(), path)

    torch.manual_seed(99)  # different initial weights, so loading must do the work
    ours = GPTModel(SMALL)
    ours.load_state_dict(torch.load(path, weights_only=True))
    ours.eval()
    idx = _tokens(SMALL, batch=3, length=SMALL.context_length)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), book(idx), atol=1e-5, rtol=0)


def test_unexpected_key_in_a_book_checkpoint_is_still_rejected():
    state = BookGPTModel(SMALL.to_dict()).state_dict()
    state["trf_blocks.0.att.W_extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="W_extra"):
        GPTModel(SMALL).load_state_dict(state)


def test_missing_key_is_still_rejected():
    state = GPTModel(SMALL).state_dict()
    del state["final_norm.shift"]
    with pytest.raises(RuntimeError, match="final_norm.shift"):
        GPTModel(SMALL).load_state_dict(state)


def test_tied_model_loads_a_state_dict_without_the_head():
    cfg = SMALL.with_overrides(tie_embeddings=True)
    source = GPTModel(cfg)
    state = {k: v for k, v in source.state_dict().items() if k != "out_head.weight"}
    target = GPTModel(cfg)
    target.load_state_dict(state)
    assert target.out_head.weight is target.tok_emb.weight
    torch.testing.assert_close(target.out_head.weight, source.tok_emb.weight, atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(2, 4, 9, 8), (1, 1, 1, 16), (3, 2, 24, 4)])
def test_fused_attention_matches_the_explicit_softmax(shape):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(shape, generator=gen) for _ in range(3))
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=shape[-2] > 1)
    torch.testing.assert_close(fused, explicit_attention(q, k, v), atol=1e-6, rtol=1e-5)


def test_model_attention_matches_the_explicit_softmax():
    torch.manual_seed(0)
    att = GPTModel(SMALL).trf_blocks[0].att.eval()
    x = torch.randn(2, 11, SMALL.emb_dim)
    with torch.no_grad():
        q, k, v = (att._heads(proj(x)) for proj in (att.W_query, att.W_key, att.W_value))
        context = explicit_attention(q, k, v).transpose(1, 2).reshape(2, 11, SMALL.emb_dim)
        torch.testing.assert_close(att(x), att.out_proj(context), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cfg", [SMALL, SMALL.with_overrides(qkv_bias=True, n_heads=6, n_layers=3)])
def test_eval_logits_match_the_book_model(cfg):
    ours, book = _both_models(cfg)
    ours.eval(), book.eval()
    for length in (1, 5, cfg.context_length):
        idx = _tokens(cfg, batch=2, length=length, seed=length)
        with torch.no_grad():
            torch.testing.assert_close(ours(idx), book(idx), atol=1e-5, rtol=0)


def test_training_mode_dropout_draws_the_same_random_numbers_as_the_book():
    cfg = SMALL.with_overrides(drop_rate=0.3)
    ours, book = _both_models(cfg)
    ours.train(), book.train()
    idx = _tokens(cfg, batch=2, length=cfg.context_length)
    torch.manual_seed(2024)
    ours_out = ours(idx)
    rng_after_ours = torch.get_rng_state()
    torch.manual_seed(2024)
    book_out = book(idx)
    torch.testing.assert_close(ours_out, book_out, atol=1e-5, rtol=0)
    # Both consumed the same random numbers, so the next batches of a training run match too.
    assert torch.equal(torch.get_rng_state(), rng_after_ours)
    # Dropout is really active: another draw gives another output.
    assert not torch.allclose(ours(idx), ours_out, atol=1e-3)


def test_training_mode_gradients_match_the_book():
    cfg = SMALL.with_overrides(drop_rate=0.2)
    ours, book = _both_models(cfg)
    idx = _tokens(cfg, batch=2, length=12)
    target = _tokens(cfg, batch=2, length=12, seed=1)
    for model in (ours, book):
        torch.manual_seed(5)
        logits = model.train()(idx)
        F.cross_entropy(logits.flatten(0, 1), target.flatten()).backward()
    book_grads = dict(book.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, book_grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("cache_type", [KVCache, StaticKVCache])
def test_cache_fed_in_chunks_gives_the_full_forward_logits(cache_type):
    torch.manual_seed(0)
    model = GPTModel(SMALL).eval()
    idx = _tokens(SMALL, batch=2, length=20)
    cache = cache_type(model, batch_size=2)
    with torch.no_grad():
        full = model(idx)
        pieces = [model(idx[:, a:b], kv_cache=cache) for a, b in [(0, 7), (7, 8), (8, 15), (15, 20)]]
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_the_static_cache_decodes_token_by_token_as_the_growing_one_does():
    """The CUDA graph's cache (every shape fixed, the position a tensor), run eagerly: each step's
    logits equal the growing cache's, and after a reset it fills again from position 0."""
    torch.manual_seed(0)
    model = GPTModel(SMALL).eval()
    idx = _tokens(SMALL, batch=1, length=SMALL.context_length)
    growing, static = KVCache(model, batch_size=1), StaticKVCache(model, batch_size=1)
    with torch.no_grad():
        for cache in (growing, static):
            model(idx[:, :3], kv_cache=cache)
        for position in range(3, SMALL.context_length):
            expected = model(idx[:, position : position + 1], kv_cache=growing)
            got = model(idx[:, position : position + 1], kv_cache=static)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        assert int(static.position) == static.length == SMALL.context_length
        static.reset()
        assert int(static.position) == static.length == 0
        torch.testing.assert_close(model(idx[:, :5], kv_cache=static), model(idx[:, :5]), atol=1e-5, rtol=0)


def test_sequence_longer_than_the_context_is_refused():
    model = GPTModel(SMALL)
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, SMALL.context_length + 1, dtype=torch.long))
    cache = KVCache(model, batch_size=1)
    model(torch.zeros(1, SMALL.context_length, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="context length"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
