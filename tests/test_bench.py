"""The benchmark harness runs, and its fast paths compute what the plain ones do.

Timings are never asserted here (the machines are shared and noisy); only
that every case runs and that the contenders agree.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from bench.__main__ import main
from bench.decoding import decoding_contenders, top1_agreement, weight_bytes_per_token
from bench.report import CaseResult, Row, Target, render_markdown
from bench.timing import time_alternating
from bench.training import training_contenders, training_flops_per_token
from bench.tui import first_frame_case, tui_stream_case
from engine.model.config import PRESETS, GPTConfig
from engine.fast.decoding_weights import CoreSplitLinear, Int8Linear, decoding_copy
from engine.errors import ConfigError
from engine.model.generation import generate
from engine.model.gpt import GPTModel, meta_model

PROMPT = torch.tensor([[15496, 11, 314, 716]])  # "Hello, I am"


def _model(cfg: GPTConfig, seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(cfg).eval()


def test_smoke_run_prints_every_contender_and_all_exact_checks_pass(capsys):
    # The default allocator: keeping freed memory would last for the rest of the test session.
    status = main(["--smoke", "--default-allocator", "--cases", "train-124m,decode-124m,first-token-long"])
    out = capsys.readouterr().out
    assert "- Allocator: the C library's defaults, for every contender" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    for case, contenders in (("train step", ("engine", "textbook", "transformers")),
                             ("greedy decode", ("engine", "engine-fp32", "engine-bf16", "engine-int8",
                                                "textbook", "transformers")),
                             ("time to first token", ("engine", "textbook", "transformers"))):
        shown = {line.split("|")[2].strip().split(" (")[0] for line in table if line.startswith(f"| {case}")}
        assert set(contenders) <= shown, (case, shown)
    exact = [line for line in out.splitlines() if "same loss" in line or "tokens as the engine" in line
             or "same first token" in line]
    assert len(exact) == 5 and all(line.startswith("- ok:") for line in exact), exact
    # The exit status says whether every check (the reduced-precision ones too) passed.
    assert status == (1 if "- FAILED" in out else 0)
    limits = [line for line in table if "(limit)" in line]
    assert len(limits) == 2 and "GFLOP/s" in limits[0] and "GB/s" in limits[1]


def test_cli_rejects_an_unknown_case(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--smoke", "--cases", "train-124m,warp-drive"])
    assert exit_info.value.code == 2
    assert "unknown case 'warp-drive'" in capsys.readouterr().err


def test_training_contenders_follow_the_same_losses_step_by_step(tiny_config):
    model = _model(tiny_config)
    tokens = torch.randint(0, tiny_config.vocab_size, (2, tiny_config.context_length + 1),
                           generator=torch.Generator().manual_seed(1))
    contenders = training_contenders(model, (tokens[:, :-1], tokens[:, 1:]), torch.device("cpu"), None,
                                     ("engine", "textbook", "transformers"))
    losses = {c.name: [c.step() for _ in range(4)] for c in contenders}
    for name in ("textbook", "transformers"):
        assert losses[name] == pytest.approx(losses["engine"], rel=1e-5), name
    assert losses["engine"][-1] < losses["engine"][0]  # the steps really trained


def test_fp32_decoding_contenders_produce_the_same_tokens_past_the_context_window(tiny_config):
    # 4 + 40 tokens outgrow the 32-token window: the engine rebuilds its cache as the window slides.
    model = _model(tiny_config)
    contenders = decoding_contenders(model, ("engine", "engine-fp32", "textbook", "transformers"))
    outputs = {c.name: c.generate(PROMPT, 40).tolist() for c in contenders if c.name != "transformers"}
    assert outputs["engine-fp32"] == outputs["engine"] == outputs["textbook"]
    # Hugging Face's GPT-2 cannot go past its position table; within it, the same tokens.
    within = {c.name: c.generate(PROMPT, 28).tolist() for c in contenders if c.name in ("engine", "transformers")}
    assert within["transformers"] == within["engine"]
    first = {c.name: c.first_token(PROMPT) for c in contenders}
    assert len(set(first.values())) == 1 and first["engine"] == outputs["engine"][0][4]


def test_last_only_logits_are_the_last_row_of_the_full_logits(tiny_config):
    model = _model(tiny_config)
    ids = torch.randint(0, tiny_config.vocab_size, (2, 9))
    with torch.no_grad():
        # Equal up to the rounding of a matrix product of another shape.
        torch.testing.assert_close(model(ids, last_only=True), model(ids)[:, -1:, :], rtol=1e-5, atol=1e-6)


def test_fp32_decoding_copy_holds_the_same_weights_in_one_block_per_core(tiny_config):
    model = _model(tiny_config)
    fast = decoding_copy(model, "fp32")
    head = fast.out_head
    assert isinstance(head, CoreSplitLinear) and head.blocks.shape[0] == torch.get_num_threads()
    rebuilt = head.blocks.transpose(1, 2).reshape(-1, tiny_config.emb_dim)[: tiny_config.vocab_size]
    assert torch.equal(rebuilt, model.out_head.weight)
    assert model.out_head.weight.requires_grad  # the original is untouched
    ids = torch.randint(0, tiny_config.vocab_size, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), model(ids), rtol=1e-5, atol=1e-5)


def test_fp32_decoding_conversion_in_place_gives_the_copys_tokens(tiny_config):
    model = _model(tiny_config)
    expected = generate(decoding_copy(model, "fp32"), PROMPT, 10, 32).tolist()
    converted = decoding_copy(model, "fp32", in_place=True)
    assert converted is model and isinstance(model.out_head, CoreSplitLinear)
    assert generate(converted, PROMPT, 10, 32).tolist() == expected


def test_core_split_linear_computes_the_linear_layer_in_any_number_of_blocks():
    torch.manual_seed(0)
    linear = nn.Linear(24, 37)  # 37 rows do not split evenly: the last block is padded
    x = torch.randn(2, 5, 24)
    for parts in (1, 3, 4):
        torch.testing.assert_close(CoreSplitLinear(linear, parts)(x), linear(x), rtol=1e-6, atol=1e-6)


def test_fp32_decoding_copy_of_a_tied_model_gives_its_tokens(tiny_config):
    model = _model(tiny_config.with_overrides(tie_embeddings=True))
    fast = decoding_copy(model, "fp32")
    assert generate(fast, PROMPT, 10, 32).tolist() == generate(model, PROMPT, 10, 32).tolist()


def test_int8_linear_computes_with_its_dequantized_weight():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    quantized = Int8Linear(linear)
    dequantized = quantized.weight_int8.float() * quantized.scale.float()[:, None]
    # Off by at most half a step (a little more in the row whose bf16 scale was rounded down).
    assert ((dequantized - linear.weight).abs() <= quantized.scale.float()[:, None] * 0.51).all()
    for shape in ((3, 5, 64), (4, 10, 64)):  # a few rows (the int8 kernel), then many (dequantized)
        x = torch.randn(shape)
        expected = x.bfloat16().float() @ dequantized.t() + linear.bias.bfloat16().float()
        torch.testing.assert_close(quantized(x).float(), expected, rtol=2e-2, atol=2e-2)


def test_reduced_precision_copies_stay_close_to_fp32(tiny_config):
    model = _model(tiny_config)
    ids = torch.randint(0, tiny_config.vocab_size, (1, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(ids)
        for weights in ("bf16", "int8"):
            copy = decoding_copy(model, weights)
            assert copy.tok_emb.weight.dtype == torch.bfloat16
            error = (copy(ids).float() - reference).abs().max() / reference.abs().max()
            assert error < 0.05, (weights, float(error))
            assert top1_agreement(copy, model, ids) > 0.5


def test_decoding_copy_refuses_unknown_weights(tiny_config):
    with pytest.raises(ConfigError, match="fp32, bf16, int8"):
        decoding_copy(_model(tiny_config), "fp8")


def test_weight_bytes_per_token_reads_one_row_of_each_embedding(tiny_config):
    model = _model(tiny_config)
    matrices = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("_emb.weight"))
    assert weight_bytes_per_token(model) == 4 * (matrices + 2 * tiny_config.emb_dim)
    assert weight_bytes_per_token(decoding_copy(model, "bf16")) == weight_bytes_per_token(model) // 2


def test_training_flops_are_counted_as_nanogpt_does():
    model = meta_model(PRESETS["gpt2-small"].with_overrides(context_length=256))
    d, layers, vocab = 768, 12, 50257
    per_block = 3 * d * d + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    weights = layers * per_block + 2 * d + vocab * d  # all but the two embedding tables
    assert training_flops_per_token(model, 256) == 6 * weights + 12 * layers * 12 * 64 * 256


def test_time_alternating_rotates_who_goes_first():
    calls = []
    samples = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert all(len(s.seconds) == 3 and s.median >= 0 for s in samples.values())


def test_markdown_report_gives_rates_relative_to_each_peer():
    result = CaseResult("decode", rows=[Row("engine", 1.0, "10 tokens", 10.0, "tok/s"),
                                        Row("textbook", 4.0, "10 tokens", 2.5, "tok/s"),
                                        Row("transformers", 2.0, "10 tokens", 5.0, "tok/s")],
                        targets=[Target("engine ÷ textbook", 4.0, 8.0)])
    report = render_markdown(["header"], [result])
    engine_row = next(line for line in report.splitlines() if line.startswith("| decode | engine |"))
    assert "| 4.00 | 2.00 |" in engine_row
    assert "- NOT met: decode: engine ÷ textbook = 4.00 (goal ≥ 8.00)" in report


def test_tui_shows_the_tokens_of_the_headless_stream():
    result = tui_stream_case("gpt-nano", 6, "Hello, I am", repeats=1, warmup=0, title="tui")
    assert result.skipped is None
    assert [check.passed for check in result.checks] == [True]
    assert {row.contender for row in result.rows} == {"tui", "headless stream"}


def test_first_frame_of_the_app_is_timed():
    result = first_frame_case(repeats=1, warmup=0, title="first frame")
    assert result.skipped is None
    assert 0 < result.rows[0].seconds < 30


def test_bf16_case_checks_the_loss_and_times_both_precisions(capsys):
    from engine.training.device import cpu_has_native_bf16

    status = main(["--smoke", "--cases", "train-bf16"])
    out = capsys.readouterr().out
    if cpu_has_native_bf16():
        assert status == 0
        assert "engine fp32" in out and "engine bf16" in out and "bf16 matmul (limit)" in out
    else:
        assert "not measured: this CPU has no native bf16" in out


def test_memory_probe_reports_a_fresh_process_peak_and_step_time():
    from bench.train_memory import _probe

    measured = _probe("chunked", 1)
    assert measured["peak_rss"] > 100e6  # torch alone takes more than 100 MB
    assert measured["step_seconds"] > 0


def test_tokenize_contenders_write_the_same_ids_in_document_order(tmp_path, monkeypatch):
    import tempfile

    from bench.tokenizing import tokenize_case

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the generated corpus stays in the test's folder
    result = tokenize_case(0.5, repeats=1, title="tokenize")
    assert result.checks and all(check.passed for check in result.checks), result.checks
    assert "tui-gpt: the same" in result.checks[0].text
    assert {"tui-gpt", "single-threaded"} <= {row.contender for row in result.rows}
    assert all(row.rate > 0 and row.rate_unit == "MB/s" for row in result.rows)
    assert result.targets[0].text == "tui-gpt MB/s ÷ single-threaded"


def test_tokenize_memory_case_reports_a_fresh_process_peak_per_corpus_size(tmp_path, monkeypatch):
    import tempfile

    from bench.tokenizing import tokenize_memory_case

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = tokenize_memory_case((0.2, 0.4), "prepare memory")
    assert [row.contender for row in result.rows] == ["tui-gpt data prepare, 0 MB", "tui-gpt data prepare, 0 MB"]
    assert all("peak RSS" in row.limit for row in result.rows)
    assert result.targets[0].value > 0


def test_each_training_step_waits_for_its_batch_within_its_step_time(tmp_path, monkeypatch):
    import tempfile

    from bench.input_stall import measure_waits, token_files
    from engine.training.settings import TrainConfig

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = TrainConfig(preset="gpt-nano", corpus=str(token_files(2**15)), max_steps=3, batch_size=2, eval_freq=3,
                         sample_tokens=0, device="cpu")
    waits, steps = measure_waits(config, tmp_path / "data")
    assert len(waits) == len(steps) == 3
    assert all(0 < wait < step for wait, step in zip(waits, steps))  # a step's time spans its wait


def test_input_stall_case_gives_the_wait_as_a_share_of_the_step(tmp_path, monkeypatch):
    import tempfile

    from bench.input_stall import input_stall_case

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = input_stall_case(torch.device("cpu"), "gpt-nano", 2, 2, 2**15, "stall")
    assert [check.passed for check in result.checks] == [True]
    wait, step = result.row("batch wait"), result.row("whole step")
    assert 0 < wait.seconds < step.seconds
    assert 0 <= result.targets[0].value <= 100


def test_book_run_compares_the_same_evaluations_and_breaks_down_each_process(capsys):
    status = main(["--smoke", "--default-allocator", "--cases", "book-run"])
    out = capsys.readouterr().out
    checks = [line for line in out.splitlines() if line.startswith(("- ok:", "- FAILED:")) and "chapter 5 run" in line]
    assert len(checks) == 2 and all(line.startswith("- ok:") for line in checks), checks
    assert "the same 3 evaluations" in checks[1]
    assert status == 0
    table = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| the book's chapter 5 run")]
    for contender in ("tui-gpt", "book"):
        assert any(cell.startswith(f"{contender} (") for cell in table)
        assert {f"{contender}: {phase}" for phase in ("start-up", "steps", "evaluations", "samples", "checkpoint",
                                                      "exit", "other")} <= set(table)


def test_a_child_reports_its_own_peak_rss_not_its_parents():
    import sys

    from bench.load_memory import rss_bytes
    from bench.train_memory import _run_child

    parent = rss_bytes("VmHWM")  # this test process, torch loaded: hundreds of MB
    child = _run_child([sys.executable, "-m", "platform"])  # a bare interpreter printing one line
    assert 0 < child < 100e6 < parent


def test_generate_process_times_the_first_character_of_a_trained_run(tmp_path, verdict_path):
    from bench.generate_process import first_character_seconds
    from tui_gpt.cli.main import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(verdict_path.read_text(encoding="utf-8")[:4000], encoding="utf-8")
    assert main(["train", "--data-dir", str(tmp_path), "--run-name", "tiny", "--corpus", str(corpus),
                 "--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2", "--max-steps", "1",
                 "--eval-iter", "1", "--sample-tokens", "1", "--device", "cpu"]) == 0
    seconds = first_character_seconds(str(tmp_path), "tiny")
    assert 0 < seconds < 120
    with pytest.raises(RuntimeError, match="ended before its first token"):
        first_character_seconds(str(tmp_path), "no-such-run")
