"""Generation: the cached decoder against a plain loop, sampling filters, end-of-text, streaming."""

from __future__ import annotations

import pytest
import torch

from engine.model.config import GPTConfig
from engine.model.generation import _Decoder, filter_logits, generate, stream
from engine.model.gpt import GPTModel, StaticKVCache
from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer

# The next-token logits of the book's toy vocabulary (chapter 5.3).
BOOK_TOY_LOGITS = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])

# A continuation whose two emoji are each split over several GPT-2 tokens.
SPLIT_EMOJI_TEXT = " there 😀 and 🦙!"


def _model(cfg: GPTConfig, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(cfg).eval()


def _tiny(**overrides) -> GPTConfig:
    base = dict(vocab_size=50257, context_length=32, emb_dim=32, n_heads=2, n_layers=2, drop_rate=0.0)
    return GPTConfig(**{**base, **overrides})


@torch.no_grad()
def _uncached_reference(model, idx, max_new_tokens, context_size, pick=lambda logits: logits.argmax(-1, keepdim=True)):
    """The book's loop: crop to the context, run the whole window, take the last position."""
    for _ in range(max_new_tokens):
        logits = model(idx[:, -context_size:])[:, -1, :]
        idx = torch.cat((idx, pick(logits)), dim=1)
    return idx


def _bigram_model(chain: list[int]) -> GPTModel:
    """A real GPTModel whose weights make token chain[i] always followed by chain[i+1].

    Attention and feed-forward outputs and position embeddings are zeroed, so each
    position's logits depend on its own token only: token chain[i] embeds as the
    i-th unit vector, which the output head maps to chain[i + 1].
    """
    assert len(set(chain)) == len(chain), "a bigram chain needs distinct tokens"
    cfg = GPTConfig(context_length=32, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)
    assert len(chain) <= cfg.emb_dim
    model = GPTModel(cfg).eval()
    with torch.no_grad():
        for param in (model.pos_emb.weight, model.tok_emb.weight, model.out_head.weight):
            param.zero_()
        for block in model.trf_blocks:
            for layer in (block.att.out_proj, block.ff.layers[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        for i, (token, following) in enumerate(zip(chain, chain[1:])):
            model.tok_emb.weight[token, i] = 1.0
            model.out_head.weight[following, i] = 10.0
    return model


# --- the cached decoder gives what the uncached loop gives ------------------

KV_CONFIGS = [
    _tiny(context_length=16, vocab_size=500),
    _tiny(context_length=32, emb_dim=48, n_heads=4, n_layers=3, qkv_bias=True, vocab_size=500),
    _tiny(context_length=24, n_heads=1, n_layers=1, tie_embeddings=True, vocab_size=500),
    _tiny(context_length=20, emb_dim=64, n_heads=8, qkv_bias=True, tie_embeddings=True, vocab_size=500),
]


@pytest.mark.parametrize("cfg", KV_CONFIGS, ids=["2h2l", "4h3l-bias", "1h1l-tied", "8h2l-bias-tied"])
@pytest.mark.parametrize(
    "prompt_len, context_size",
    [(3, None), (5, "half"), ("2x", None)],
    ids=["short-prompt", "short-window", "long-prompt"],
)
def test_cached_greedy_equals_the_uncached_loop(cfg, prompt_len, context_size):
    model = _model(cfg, seed=cfg.n_layers)
    ctx = cfg.context_length // 2 + 1 if context_size == "half" else cfg.context_length
    length = 2 * cfg.context_length + 5 if prompt_len == "2x" else prompt_len
    idx = torch.randint(0, cfg.vocab_size, (2, length), generator=torch.Generator().manual_seed(length))
    cached = generate(model, idx, 200, ctx)
    assert cached.shape == (2, length + 200)
    assert torch.equal(cached, _uncached_reference(model, idx, 200, ctx))


@pytest.fixture
def static_cache_decoding(monkeypatch):
    """The decoder's CUDA-graph path with the graph replaced by a plain call: its static cache, the
    rebuild past the window and the bookkeeping, on the CPU (the graph itself: tests/test_cuda.py)."""
    import engine.model.generation as generation

    class EagerStep:
        def __init__(self, model, cache):
            self.model, self.cache = model, cache

        def __call__(self, next_ids):
            return self.model(next_ids, kv_cache=self.cache, last_only=True)[:, -1, :]

    monkeypatch.setattr(generation, "graph_decoding_possible", lambda model: True)
    monkeypatch.setattr(generation, "GraphedStep", EagerStep)


@pytest.mark.parametrize("cfg", KV_CONFIGS, ids=["2h2l", "4h3l-bias", "1h1l-tied", "8h2l-bias-tied"])
@pytest.mark.parametrize("context_size", [None, "half"], ids=["whole-window", "short-window"])
def test_the_static_cache_path_gives_the_uncached_tokens(cfg, context_size, static_cache_decoding):
    model = _model(cfg, seed=cfg.n_layers)
    ctx = cfg.context_length // 2 + 1 if context_size == "half" else cfg.context_length
    idx = torch.randint(0, cfg.vocab_size, (2, 4), generator=torch.Generator().manual_seed(4))
    decoder = _Decoder(model, idx, ctx)
    decoder.logits()
    decoder.append(idx[:, :1])
    assert isinstance(decoder.cache, StaticKVCache) and decoder.graph is not None
    assert torch.equal(generate(model, idx, 3 * cfg.context_length, ctx),
                       _uncached_reference(model, idx, 3 * cfg.context_length, ctx))


def test_context_size_beyond_the_model_context_is_clamped():
    cfg = KV_CONFIGS[0]
    model = _model(cfg)
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(generate(model, idx, 40, 10 * cfg.context_length),
                       _uncached_reference(model, idx, 40, cfg.context_length))


def test_cached_sampling_equals_the_uncached_loop_with_the_same_generator():
    cfg = KV_CONFIGS[1]
    model = _model(cfg)
    idx = torch.tensor([[5, 6, 7]])
    rng = torch.Generator().manual_seed(11)

    def sample(logits):
        probs = torch.softmax(filter_logits(logits, top_k=20, top_p=0.9, temperature=1.3), dim=-1)
        return torch.multinomial(probs, 1, generator=rng)

    expected = _uncached_reference(model, idx, 60, cfg.context_length, pick=sample)
    got = generate(model, idx, 60, cfg.context_length, temperature=1.3, top_k=20, top_p=0.9, seed=11)
    assert torch.equal(got, expected)


def test_zero_new_tokens_returns_the_prompt():
    idx = torch.tensor([[1, 2]])
    assert torch.equal(generate(_model(KV_CONFIGS[0]), idx, 0, 16), idx)


# --- sampling filters -------------------------------------------------------


def test_book_toy_top3_probabilities():
    probs = torch.softmax(filter_logits(BOOK_TOY_LOGITS, top_k=3, temperature=1.0), dim=-1)
    expected = torch.tensor([0.0615, 0, 0, 0.5775, 0, 0, 0, 0.3610, 0])
    torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)


def test_temperature_scales_after_top_k():
    filtered = filter_logits(BOOK_TOY_LOGITS, top_k=3, temperature=0.5)
    kept = torch.isfinite(filtered)
    assert kept.tolist() == [True, False, False, True, False, False, False, True, False]
    torch.testing.assert_close(filtered[kept], BOOK_TOY_LOGITS[kept] / 0.5)


def test_temperature_zero_leaves_logits_and_is_greedy():
    assert torch.equal(filter_logits(BOOK_TOY_LOGITS, temperature=0.0), BOOK_TOY_LOGITS)
    cfg = KV_CONFIGS[0]
    model = _model(cfg)
    idx = torch.tensor([[1, 2, 3]])
    torch.manual_seed(0)
    greedy = generate(model, idx, 30, 16, temperature=0.0, top_k=5, top_p=0.5)
    assert torch.equal(greedy, _uncached_reference(model, idx, 30, 16))


@pytest.mark.parametrize("top_p, kept_tokens", [(0.45, {2}), (0.7, {2, 0}), (0.85, {2, 0, 3}), (0.99, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept_tokens):
    # Deliberately not sorted: probabilities 0.3, 0.05, 0.5, 0.15 for tokens 0..3.
    logits = torch.log(torch.tensor([0.3, 0.05, 0.5, 0.15]))
    filtered = filter_logits(logits, top_p=top_p, temperature=1.0)
    assert {i for i, v in enumerate(filtered.tolist()) if v != float("-inf")} == kept_tokens


def test_top_p_of_one_or_none_keeps_everything():
    assert torch.equal(filter_logits(BOOK_TOY_LOGITS, top_p=1.0, temperature=1.0), BOOK_TOY_LOGITS)
    assert torch.equal(filter_logits(BOOK_TOY_LOGITS, top_p=None, temperature=1.0), BOOK_TOY_LOGITS)


def test_filters_work_row_by_row_on_a_batch():
    batch = torch.stack([BOOK_TOY_LOGITS, BOOK_TOY_LOGITS.flip(0)])
    filtered = filter_logits(batch, top_k=3, temperature=1.0)
    assert torch.equal(filtered[1], filter_logits(BOOK_TOY_LOGITS.flip(0), top_k=3, temperature=1.0))


def test_seed_makes_sampling_reproducible_and_leaves_the_global_rng_alone():
    cfg = KV_CONFIGS[0]
    model = _model(cfg)
    idx = torch.tensor([[1, 2, 3]])

    def sample(seed):
        return generate(model, idx, 25, 16, temperature=1.5, top_k=100, seed=seed)

    torch.manual_seed(1)
    global_state = torch.get_rng_state()
    first = sample(seed=42)
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(2)
    assert torch.equal(sample(seed=42), first)
    assert not torch.equal(sample(seed=43), first)


def test_without_a_seed_sampling_follows_the_global_rng_like_the_book():
    model = _model(KV_CONFIGS[0])
    idx = torch.tensor([[1, 2, 3]])
    torch.manual_seed(123)
    first = generate(model, idx, 25, 16, temperature=1.5, top_k=100)
    torch.manual_seed(123)
    assert torch.equal(generate(model, idx, 25, 16, temperature=1.5, top_k=100), first)


# --- end of text ------------------------------------------------------------

EOS_CHAIN = [17250, 612, 290, END_OF_TEXT_ID, 995]  # "Hi", " there", " and", <|endoftext|>, " world"


def test_bigram_model_follows_its_chain():
    model = _bigram_model(EOS_CHAIN)
    out = generate(model, torch.tensor([EOS_CHAIN[:1]]), 4, 32)
    assert out.tolist() == [EOS_CHAIN]


def test_eos_stops_a_single_sequence_without_appending_it():
    model = _bigram_model(EOS_CHAIN)
    out = generate(model, torch.tensor([EOS_CHAIN[:1]]), 10, 32, eos_id=END_OF_TEXT_ID)
    assert out.tolist() == [EOS_CHAIN[:3]]


def test_eos_stops_a_batch_once_every_sequence_has_produced_it():
    model = _bigram_model(EOS_CHAIN)
    prompts = torch.tensor([EOS_CHAIN[:1], EOS_CHAIN[:1]])
    out = generate(model, prompts, 10, 32, eos_id=END_OF_TEXT_ID)
    assert out.tolist() == [EOS_CHAIN[:4]] * 2


# --- streaming --------------------------------------------------------------


def test_stream_yields_the_greedy_tokens_with_their_probabilities():
    tokenizer = get_tokenizer()
    model = _model(_tiny(), seed=5)
    prompt_ids = tokenizer.encode("Hello, I am")
    tokens = list(stream(model, tokenizer, "Hello, I am", 20, n_alternatives=4))
    ids = [t.token_id for t in tokens]
    expected = generate(model, torch.tensor([prompt_ids]), 20, 32)[0, len(prompt_ids):].tolist()
    assert ids == expected
    assert [t.index for t in tokens] == list(range(20))
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        uncached_probs = torch.softmax(model(full)[0, len(prompt_ids) - 1 : -1], dim=-1)
    for t, probs in zip(tokens, uncached_probs):
        assert 0.0 < t.prob <= 1.0
        assert t.prob == pytest.approx(float(probs[t.token_id]), abs=1e-5)
        assert len(t.alternatives) == 4
        alt_probs = [a.prob for a in t.alternatives]
        assert alt_probs == sorted(alt_probs, reverse=True)
        assert t.alternatives[0].token_id == t.token_id
        assert t.alternatives[0].prob == t.prob
    assert "".join(t.text for t in tokens) == tokenizer.decode(ids)


def test_stream_sampling_with_a_seed_matches_generate():
    tokenizer = get_tokenizer()
    model = _model(_tiny(), seed=5)
    prompt_ids = tokenizer.encode("Every effort")
    streamed = [t.token_id for t in stream(model, tokenizer, "Every effort", 15, temperature=1.2, top_k=50, seed=9)]
    generated = generate(model, torch.tensor([prompt_ids]), 15, 32, temperature=1.2, top_k=50, seed=9)
    assert streamed == generated[0, len(prompt_ids):].tolist()


def test_split_characters_arrive_whole_in_one_piece():
    tokenizer = get_tokenizer()
    continuation = tokenizer.encode(SPLIT_EMOJI_TEXT)
    # The premise: some of these tokens are not whole characters on their own.
    assert any(_is_partial_utf8(tokenizer.decode_single_token_bytes(i)) for i in continuation)
    prompt = tokenizer.encode("Hi")
    model = _bigram_model(prompt + continuation)
    tokens = list(stream(model, tokenizer, "Hi", len(continuation)))
    assert [t.token_id for t in tokens] == continuation
    pieces = [t.text for t in tokens]
    assert all("\ufffd" not in piece for piece in pieces)
    for emoji in ("😀", "🦙"):
        assert sum(emoji in piece for piece in pieces) == 1
    assert "" in pieces  # a token in the middle of a character shows nothing yet
    assert "".join(pieces) == SPLIT_EMOJI_TEXT == tokenizer.decode(continuation)


def test_stream_ending_inside_a_character_matches_decode():
    tokenizer = get_tokenizer()
    continuation = tokenizer.encode(SPLIT_EMOJI_TEXT)
    model = _bigram_model(tokenizer.encode("Hi") + continuation)
    tokens = list(stream(model, tokenizer, "Hi", 2))  # " there", then the first bytes of 😀
    assert "".join(t.text for t in tokens) == tokenizer.decode(continuation[:2])


def _is_partial_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_stream_stops_after_the_eos_token():
    tokenizer = get_tokenizer()
    model = _bigram_model(EOS_CHAIN)
    tokens = list(stream(model, tokenizer, "Hi", 10, eos_id=END_OF_TEXT_ID))
    assert [t.token_id for t in tokens] == EOS_CHAIN[1:4]


def test_should_stop_ends_the_stream_between_tokens():
    tokenizer = get_tokenizer()
    model = _model(_tiny())
    produced = []
    tokens = stream(model, tokenizer, "Hello", 50, should_stop=lambda: len(produced) >= 3)
    for token in tokens:
        produced.append(token)
    assert len(produced) == 3


def test_leaving_the_loop_stops_and_restores_training_mode():
    tokenizer = get_tokenizer()
    model = _model(_tiny()).train()
    tokens = stream(model, tokenizer, "Hello", 50)
    for token in tokens:
        assert not model.training  # generation runs in eval mode
        if token.index == 2:
            break
    tokens.close()
    assert model.training
    with pytest.raises(StopIteration):
        next(tokens)


def test_prompt_longer_than_the_context_is_cropped_from_the_left(verdict_text):
    tokenizer = get_tokenizer()
    cfg = _tiny()
    model = _model(cfg)
    prompt_ids = tokenizer.encode(verdict_text[:2000])
    assert len(prompt_ids) > 3 * cfg.context_length
    ids = [t.token_id for t in stream(model, tokenizer, verdict_text[:2000], 10)]
    cropped = torch.tensor([prompt_ids[-cfg.context_length:]])
    assert ids == _uncached_reference(model, cropped, 10, cfg.context_length)[0, cfg.context_length:].tolist()


def test_tensor_prompt_is_accepted():
    tokenizer = get_tokenizer()
    model = _model(_tiny())
    from_text = [t.token_id for t in stream(model, tokenizer, "Hello, I am", 5)]
    from_tensor = [t.token_id for t in stream(model, tokenizer, torch.tensor([[15496, 11, 314, 716]]), 5)]
    assert from_tensor == from_text


def test_empty_prompt_starts_from_end_of_text():
    tokenizer = get_tokenizer()
    model = _model(_tiny())
    ids = [t.token_id for t in stream(model, tokenizer, "", 8)]
    expected = _uncached_reference(model, torch.tensor([[END_OF_TEXT_ID]]), 8, 32)[0, 1:].tolist()
    assert ids == expected
