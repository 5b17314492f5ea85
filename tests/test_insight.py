"""engine.insight: scoring, the logit lens, attention maps, model comparison and training health."""

from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from engine.insight.attention import attention_maps_ids, block_attention_weights, causal_attention_weights
from engine.insight.compare import compare_ids
from engine.insight.health import LossSpikeDetector, snapshot_weights, update_to_weight_ratios
from engine.insight.logit_lens import logit_lens_ids
from engine.insight.scoring import plan_windows, score_ids, score_text
from engine.insight.tokens import encode
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.training.loss import calc_loss_batch


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return GPTModel(tiny_config).eval()


def _ids(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, 50257, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_windows_score_every_token_once_with_the_most_context_the_stride_allows():
    windows = plan_windows(100, context_length=32, stride=8)
    scored = [t for w in windows for t in range(w.scored_from + 1, w.end + 1)]
    assert scored == list(range(1, 100))
    assert all(w.end - w.start == 32 for w in windows)
    assert all(w.scored_from - w.start >= 32 - 8 for w in windows[1:])


def test_scored_loss_equals_the_book_loss_on_the_same_windows(model, tiny_config):
    c = tiny_config.context_length
    ids = _ids(3 * c + 1)
    score = score_ids(model, ids, stride=c)
    assert len(score.windows) == 3
    with torch.no_grad():
        book = [calc_loss_batch(torch.tensor([ids[w.start:w.end]]), torch.tensor([ids[w.start + 1:w.end + 1]]),
                                model, "cpu").item() for w in score.windows]
    assert score.mean_loss == pytest.approx(sum(book) / 3, rel=1e-5)
    assert [t.position for t in score.tokens] == list(range(1, 3 * c + 1))


def test_overlapping_windows_take_one_forward_pass_each_and_agree_with_the_book_loss(model, tiny_config):
    ids = _ids(80)
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    score = score_ids(model, ids, stride=8)
    hook.remove()
    assert len(calls) == len(score.windows) == len(plan_windows(80, tiny_config.context_length, 8))
    last = score.windows[-1]
    new = last.end - last.scored_from
    with torch.no_grad():
        logits = model(torch.tensor([ids[last.start:last.end]]))[0, -new:]
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[last.scored_from + 1:last.end + 1]))
    assert sum(t.loss for t in score.tokens[-new:]) / new == pytest.approx(expected.item(), rel=1e-5)


def test_batched_windows_score_the_same_as_one_at_a_time(model):
    ids = _ids(90)
    one = score_ids(model, ids, stride=8)
    many = score_ids(model, ids, stride=8, batch_windows=4)
    assert [t.loss for t in many.tokens] == pytest.approx([t.loss for t in one.tokens], rel=1e-5)


def test_token_scores_hold_probability_rank_and_alternatives(model):
    score = score_text(model, "The cat sat on the mat because it was tired.", top_k=3)
    for t in score.tokens:
        assert t.prob == pytest.approx(math.exp(-t.loss))
        assert len(t.alternatives) == 3
        assert t.alternatives[0].prob >= t.alternatives[1].prob >= t.alternatives[2].prob
        assert (t.rank == 1) == (t.alternatives[0].token_id == t.token_id)
        assert t.rank >= 1 and (t.rank > 3 or t.alternatives[t.rank - 1].token_id == t.token_id)


def test_bits_per_byte_are_nats_over_ln2_over_the_scored_tokens_bytes(model):
    text = "héllo wörld, again"
    score = score_text(model, text)
    first_bytes = len(get_tokenizer().decode_single_token_bytes(encode(text)[0]))
    assert score.scored_bytes == len(text.encode("utf-8")) - first_bytes
    assert score.bits_per_byte == pytest.approx(score.total_nats / math.log(2) / score.scored_bytes)
    assert score.perplexity == pytest.approx(math.exp(score.mean_loss))


def test_an_empty_text_is_refused(model):
    with pytest.raises(ConfigError, match="empty"):
        score_text(model, "")


def test_the_last_row_of_the_logit_lens_is_the_models_prediction(model):
    ids = _ids(12)
    table = logit_lens_ids(model, ids, position=7, top_k=4)
    assert len(table.rows) == model.cfg.n_layers
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids[:8]]))[0, -1], dim=-1)
    top = probs.topk(4)
    assert [a.token_id for a in table.rows[-1]] == top.indices.tolist()
    assert [a.prob for a in table.rows[-1]] == pytest.approx(top.values.tolist(), rel=1e-5)


def test_the_logit_lens_reads_a_position_beyond_the_window_with_the_last_window(model, tiny_config):
    ids = _ids(50)
    table = logit_lens_ids(model, ids, position=-1)
    assert table.position == 49 and table.context_start == 50 - tiny_config.context_length


def test_the_logit_lens_refuses_a_position_outside_the_text(model):
    with pytest.raises(ConfigError, match="outside"):
        logit_lens_ids(model, _ids(5), position=5)


def test_attention_rows_sum_to_one_and_match_the_masked_softmax(model):
    ids = _ids(10)
    maps = attention_maps_ids(model, ids)
    cfg = model.cfg
    assert maps.weights.shape == (cfg.n_layers, cfg.n_heads, 10, 10)
    assert torch.allclose(maps.weights.sum(-1), torch.ones(cfg.n_layers, cfg.n_heads, 10), atol=1e-5)
    assert torch.all(maps.weights.triu(diagonal=1) == 0)
    q, k = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    scores = (q @ k.transpose(-2, -1)) / 2.0
    expected = torch.stack([torch.stack([
        torch.tensor([math.exp(scores[h, i, j]) if j <= i else 0.0 for j in range(5)]) for i in range(5)])
        for h in range(2)])
    expected = expected / expected.sum(-1, keepdim=True)
    assert torch.allclose(causal_attention_weights(q, k), expected, atol=1e-5)


def test_attention_weights_reproduce_the_blocks_own_output(model):
    ids = torch.tensor([_ids(9)])
    block = model.trf_blocks[1]
    captured = {}
    hook = block.register_forward_hook(lambda _m, args, out: captured.update(x=args[0], out=out))
    with torch.no_grad():
        model(ids)
        hook.remove()
        x = captured["x"]
        att = block.att
        h = block.norm1(x)
        weights = block_attention_weights(att, h)
        context = (weights @ att._heads(att.W_value(h))).transpose(1, 2).reshape(x.shape)
        mid = x + att.out_proj(context)
        reproduced = mid + block.ff(block.norm2(mid))
    assert torch.allclose(reproduced, captured["out"], atol=1e-5)
    assert torch.allclose(attention_maps_ids(model, ids[0].tolist()).weights[1], weights[0], atol=1e-6)


def test_head_summaries_name_where_a_head_looks():
    from engine.insight.attention import summarize_head

    previous = torch.zeros(4, 4)
    previous[0, 0] = 1
    for i in range(1, 4):
        previous[i, i - 1] = 1
    summary = summarize_head(previous, 1, 1)
    assert summary.looks_at == "previous" and summary.previous == 1.0 and summary.entropy == pytest.approx(0.0)
    uniform = torch.tril(torch.ones(4, 4))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    assert summarize_head(uniform, 1, 2).looks_at == "spread"


def test_a_model_compared_with_itself_differs_nowhere(model):
    comparison = compare_ids(model, model, _ids(40), stride=8)
    assert all(d.delta == 0 for d in comparison.diffs)
    assert comparison.mean_delta == 0
    assert comparison.most_improved() == [] and comparison.most_worsened() == []


def test_comparison_ranks_the_most_improved_and_worsened_tokens(model, tiny_config):
    torch.manual_seed(5)
    other = GPTModel(tiny_config).eval()
    comparison = compare_ids(model, other, _ids(20))
    improved, worsened = comparison.most_improved(3), comparison.most_worsened(3)
    assert [d.delta for d in improved] == sorted(d.delta for d in improved)
    assert improved[0].delta == min(d.delta for d in comparison.diffs)
    assert worsened[0].delta == max(d.delta for d in comparison.diffs)


def test_models_with_different_vocabularies_are_not_compared(model, tiny_config):
    other = GPTModel(tiny_config.with_overrides(vocab_size=60000))
    with pytest.raises(ConfigError, match="different vocabularies"):
        compare_ids(model, other, _ids(5))


def test_update_to_weight_ratio_matches_a_hand_computation():
    layer = torch.nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
        layer.bias.fill_(2.0)
    before = snapshot_weights(layer.named_parameters())
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.tensor([[1.0, 2.0]])).sum().backward()  # d/dw = [1, 2], d/db = 1
    optimizer.step()
    ratios = update_to_weight_ratios(layer.named_parameters(), before)
    assert ratios["weight"] == pytest.approx(0.1 * math.sqrt(1 + 4) / 5.0)
    assert ratios["bias"] == pytest.approx(0.1 * 1 / 2.0)


def test_loss_spike_detector_flags_a_jump_and_non_finite_losses():
    detector = LossSpikeDetector(window=20, threshold=6.0, min_history=5)
    assert [detector.observe(3.0 + 0.01 * (i % 3)) for i in range(10)] == [None] * 10
    assert detector.observe(3.02) is None
    spike = detector.observe(5.0)
    assert spike is not None and spike.reason == "spike" and spike.mean == pytest.approx(3.01, abs=0.01)
    assert detector.observe(float("nan")).reason == "non-finite"
    assert detector.observe(3.01) is None


def test_the_scoring_benchmark_case_reports_windows_and_tokens_per_second():
    from bench.scoring import scoring_case

    cfg = GPTConfig(context_length=32, emb_dim=32, n_heads=2, n_layers=1, drop_rate=0.0)
    result = scoring_case(torch.device("cpu"), cfg, n_tokens=100, repeats=1, warmup=0, sync=None, title="score")
    assert [check.passed for check in result.checks] == [True]
    assert len(result.rows) == 3 and all(row.rate > 0 and "windows/s" in row.note for row in result.rows)
