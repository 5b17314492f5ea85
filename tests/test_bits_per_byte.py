"""Bits per byte: computed from summed nats and decoded bytes, recorded optionally, shown beside the loss."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer, token_byte_lengths
from engine.runs.events import EvalDone, event_from_dict
from engine.runs.progress import RunProgress
from engine.training.loss import bits_per_byte


def _eval(val_loss: float, val_bpb: float | None) -> EvalDone:
    return EvalDone(step=4, epoch=0, tokens_seen=100, train_loss=5.0, val_loss=val_loss, train_ppl=math.exp(5.0),
                    val_ppl=math.exp(val_loss), train_bpb=None if val_bpb is None else 1.9, val_bpb=val_bpb)


def test_bits_per_byte_divides_summed_nats_by_ln2_and_decoded_bytes():
    ids = get_tokenizer().encode("héllo wörld") + [END_OF_TEXT_ID]
    n_bytes = int(token_byte_lengths()[torch.tensor(ids)].sum())
    assert n_bytes == len("héllo wörld".encode("utf-8"))  # <|endoftext|> is a marker: no bytes
    assert bits_per_byte(2.0 * len(ids), n_bytes) == pytest.approx(2.0 * len(ids) / math.log(2) / n_bytes)
    assert math.isnan(bits_per_byte(1.0, 0))


def test_eval_events_written_before_bits_per_byte_still_read():
    old = {"event": "eval", "step": 1, "epoch": 0, "tokens_seen": 10, "train_loss": 5.0, "val_loss": 5.5,
           "train_ppl": 148.4, "val_ppl": 244.7}
    event = event_from_dict(json.loads(json.dumps(old)))
    assert event.val_loss == 5.5 and event.val_bpb is None and event.train_bpb is None


def test_summary_keeps_the_bits_per_byte_of_the_best_val_loss():
    progress = RunProgress()
    for event in (_eval(6.0, 2.5), _eval(5.0, 2.1), _eval(5.5, 2.3)):
        progress.add(event)
    assert (progress.best_val_loss, progress.best_val_bpb) == (5.0, 2.1)


def test_progress_and_stats_show_bits_per_byte_only_when_recorded():
    from tui_gpt.app.panes.stats.stats_pane import latest_numbers
    from tui_gpt.cli.progress import TrainingProgress

    out = io.StringIO()
    progress = TrainingProgress(out, live=False)
    progress.on_event(_eval(5.0, 2.125))
    progress.on_event(_eval(5.0, None))
    first, second = out.getvalue().splitlines()
    assert first.endswith("val 2.125 bits/byte") and "bits/byte" not in second

    with_bpb, without = RunProgress(), RunProgress()
    with_bpb.add(_eval(5.0, 2.125))
    without.add(_eval(5.0, None))
    assert "2.125 bits/byte" in latest_numbers([("a", with_bpb)]).plain
    assert "bits/byte" not in latest_numbers([("b", without)]).plain
