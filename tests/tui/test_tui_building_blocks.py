"""The app's pieces that need no screen: transcripts, settings, token hand-off, commands."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest
from textual.color import Color

from engine.runs.store import RunStore
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from tui_gpt.app.services.generation_job import DrainPacer, GenerationSettings, TokenBuffer, run_generation
from tui_gpt.app.services.model_catalog import ModelChoice, load_choice
from tui_gpt.app.services.training_process import TrainingRequest, launch, request_stop, resume_command, train_command
from tui_gpt.app.services.transcripts import Exchange, TokenRecord, TranscriptStore, transcript_file_name
from tui_gpt.app.panes.prompt.exchange_view import probability_colour
from tui_gpt.app.panes.prompt.generation_settings import SettingsError, parse_settings
from tui_gpt.app.panes.prompt.token_inspector import probability_bar, visible

from .helpers import TINY, make_run


def exchange(prompt: str, *texts: str) -> Exchange:
    tokens = [TokenRecord(i, text, 0.5, ((i, text, 0.5), (99, " x", 0.25))) for i, text in enumerate(texts)]
    return Exchange(prompt, "model", {"max_new_tokens": len(texts)}, tokens)


def test_transcript_round_trips_tokens_and_alternatives(tmp_path):
    store = TranscriptStore(tmp_path)
    store.append(("fresh", "gpt-nano"), exchange("Hi", " there", " ünïcode"))
    store.append(("fresh", "gpt-nano"), exchange("Again", "!"))
    loaded = store.load(("fresh", "gpt-nano"))
    assert [e.completion for e in loaded] == [" there ünïcode", "!"]
    assert loaded[0].tokens[1].alternatives == ((1, " ünïcode", 0.5), (99, " x", 0.25))
    assert store.load(("fresh", "gpt-micro")) == []


def test_a_torn_last_line_loses_only_itself(tmp_path):
    store = TranscriptStore(tmp_path)
    store.append(("m",), exchange("one", "1"))
    with open(store.path_for(("m",)), "a", encoding="utf-8") as f:
        f.write('{"prompt": "half')  # a crash in the middle of a write
    store.append(("m",), exchange("two", "2"))
    assert [e.prompt for e in store.load(("m",))] == ["one", "two"]


def test_run_names_that_differ_only_in_punctuation_or_case_keep_separate_transcripts(tmp_path):
    names = ["a b", "a_b", "A_b", "a.b", "a%2Eb", "a/b", "ä_b"]
    store = TranscriptStore(tmp_path)
    for name in names:
        store.append(("run", name, "latest", "id"), exchange(f"to {name}", "x"))
    for name in names:
        assert [e.prompt for e in store.load(("run", name, "latest", "id"))] == [f"to {name}"]
    # Apart on a case-insensitive file system too, and parts never run into each other.
    keys = [("run", name, "latest", "id") for name in names] + [("run", "a", "b.latest", "id")]
    assert len({transcript_file_name(key).lower() for key in keys}) == len(keys)


def test_transcript_file_names_stay_in_their_folder_and_within_name_limits(tmp_path):
    for key in [("file", str(tmp_path / "a b" / "model.safetensors")), ("run", "../x", "best", "id"),
                ("run", "é" * 100, "best", "id"), ("run", "é" * 100, "best", "other id")]:
        name = transcript_file_name(key)
        assert "/" not in name and not name.startswith(".") and len(name.encode()) <= 255
    assert transcript_file_name(("run", "é" * 100, "best", "id")) != transcript_file_name(("run", "é" * 100, "best", "x"))


def test_a_runs_latest_and_best_checkpoints_keep_separate_transcripts(data_dir):
    make_run(data_dir, "alpha")
    store = RunStore(data_dir)
    latest = load_choice(ModelChoice("run", "alpha", "latest"), store, "cpu")
    best = load_choice(ModelChoice("run", "alpha", "best"), store, "cpu")
    transcripts = TranscriptStore(data_dir / "transcripts")
    transcripts.append(latest.transcript_key, exchange("asked the latest", "x"))
    assert transcripts.load(best.transcript_key) == []
    assert [e.prompt for e in transcripts.load(latest.transcript_key)] == ["asked the latest"]


def test_a_deleted_and_recreated_run_does_not_inherit_the_old_transcript(data_dir):
    make_run(data_dir, "alpha")
    store, choice = RunStore(data_dir), ModelChoice("run", "alpha", "best")
    transcripts = TranscriptStore(data_dir / "transcripts")
    transcripts.append(load_choice(choice, store, "cpu").transcript_key, exchange("asked the old run", "x"))
    store.delete("alpha")
    make_run(data_dir, "alpha")  # within the same second: the run's id tells them apart, not its time
    assert transcripts.load(load_choice(choice, store, "cpu").transcript_key) == []


def test_clearing_removes_one_models_transcript(tmp_path):
    store = TranscriptStore(tmp_path)
    store.append(("fresh", "a"), exchange("p", "x"))
    store.append(("fresh", "b"), exchange("p", "y"))
    store.clear(("fresh", "a"))
    assert store.load(("fresh", "a")) == [] and len(store.load(("fresh", "b"))) == 1


def test_settings_parse_with_empty_meaning_default_or_off():
    settings = parse_settings({"max_new_tokens": "", "temperature": "", "top_k": "", "top_p": "", "seed": ""})
    assert settings == GenerationSettings()
    assert parse_settings({"max_new_tokens": "7", "temperature": "0.8", "top_k": "40", "top_p": "0.95",
                           "seed": "3"}) == GenerationSettings(7, 0.8, 40, 0.95, 3)


@pytest.mark.parametrize(("values", "message"), [
    ({"max_new_tokens": "lots"}, "max new tokens must be a number"),
    ({"top_k": "0"}, "top k must be >= 1"),
    ({"top_p": "0"}, "top p must be above 0"),
    ({"seed": "-2"}, "seed must be between 0"),
])
def test_bad_settings_name_the_setting(values, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings(values)


def test_settings_describe_themselves_for_the_transcript():
    assert GenerationSettings().describe() == "greedy, 50 tokens"
    assert GenerationSettings(20, 0.7, 40, None, 1).describe() == "T 0.7, top-k 40, seed 1, 20 tokens"


def test_generation_fills_the_buffer_and_reports_the_end():
    buffer = TokenBuffer()
    model = GPTModel(TINY).eval()
    run_generation(model, get_tokenizer(), "Hello", GenerationSettings(max_new_tokens=8), buffer, lambda: False)
    tokens, done, error = buffer.take()
    assert len(tokens) == 8 and done and error is None
    assert all(t.alternatives[0][2] >= t.alternatives[-1][2] for t in tokens)
    assert buffer.take() == ([], True, None)  # taken once


def test_generation_stops_between_tokens_when_asked():
    buffer = TokenBuffer()
    model = GPTModel(TINY).eval()
    seen = []

    def cancelled() -> bool:
        seen.append(None)
        return len(seen) > 3

    run_generation(model, get_tokenizer(), "Hello", GenerationSettings(max_new_tokens=1000), buffer, cancelled)
    tokens, done, _ = buffer.take()
    assert done and len(tokens) == 3


def test_a_failing_generation_ends_with_a_one_line_error():
    buffer = TokenBuffer()

    class Broken(GPTModel):
        def forward(self, *args, **kwargs):
            raise RuntimeError("boom\nwith a second line")

    run_generation(Broken(TINY), get_tokenizer(), "Hi", GenerationSettings(), buffer, lambda: False)
    assert buffer.take() == ([], True, "RuntimeError: boom with a second line")


def test_buffer_hands_tokens_over_between_threads():
    buffer = TokenBuffer()
    token = TokenRecord(1, "a", 0.5)
    threads = [threading.Thread(target=lambda: [buffer.put(token) for _ in range(500)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    taken = 0
    while any(t.is_alive() for t in threads):
        taken += len(buffer.take()[0])
    taken += len(buffer.take()[0])
    assert taken == 2000


def test_drain_pacer_keeps_the_ui_threads_share_of_the_cpu_near_its_budget():
    cpu = [0.0]
    pacer = DrainPacer(share=0.05, fastest=1 / 60, slowest=0.25, cpu_clock=lambda: cpu[0])

    def after_spending(seconds: float) -> float:
        cpu[0] += seconds
        return pacer.next_delay()

    assert after_spending(0.0001) == 1 / 60  # cheap updates: as often as a 60 Hz screen
    assert after_spending(0.005) == pytest.approx(0.1)  # 5 ms per update: every 100 ms, 5% of the time
    assert after_spending(0.050) == 0.25  # costly ones: never fewer than 4 updates a second
    assert after_spending(0.0) == 1 / 60  # measured afresh each time


def test_train_command_passes_only_what_was_set(tmp_path):
    request = TrainingRequest(run="r1", settings={"preset": "gpt-nano", "corpus": "/c.txt", "max_steps": 4, "lr": 0.001,
                                                  "seed": 0, "sample_at_eval": False})
    command = train_command(tmp_path, request)
    assert command[:3] == [sys.executable, "-m", "tui_gpt"]
    assert command[3:] == ["train", "--data-dir", str(tmp_path), "--run-name", "r1", "--preset", "gpt-nano",
                           "--corpus", "/c.txt", "--max-steps", "4", "--lr", "0.001", "--seed", "0",
                           "--no-sample-at-eval"]


def test_a_recipe_replaces_the_preset_and_no_corpus_means_the_demo(tmp_path):
    command = train_command(tmp_path, TrainingRequest(run="b", recipe="book"))
    assert "--recipe" in command and "--preset" not in command and "--corpus" not in command
    assert resume_command(tmp_path, "b")[3:] == ["train", "--data-dir", str(tmp_path), "--run-name", "b", "--resume"]


def wait_for_exit(process, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := process.exit_code()) is None:
        assert time.monotonic() < deadline, "the process did not end"
        time.sleep(0.02)
    return code


def test_launched_process_reports_its_exit_code_and_last_error_line(tmp_path):
    script = "import sys; sys.stderr.write('noise\\ntui-gpt: error: corpus x.txt is empty\\n'); sys.exit(2)"
    process = launch(tmp_path, "r1", [sys.executable, "-c", script])
    assert wait_for_exit(process) == 2
    assert process.error_line() == "corpus x.txt is empty"


def test_a_launched_run_has_its_own_session_and_stops_on_request(tmp_path):
    ready = tmp_path / "ready"
    script = ("import signal, sys, time, pathlib; signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); "
              f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)")
    process = launch(tmp_path, "r2", [sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "the process did not start"
        time.sleep(0.02)
    assert os.getsid(process.pid) != os.getsid(0)  # the app's terminal cannot signal it
    assert request_stop(process.pid)
    assert wait_for_exit(process) == 3
    assert not request_stop(process.pid)  # gone


def test_token_colours_run_from_unlikely_to_certain_on_a_log_scale():
    low, high = Color(255, 0, 0), Color(0, 255, 0)
    assert probability_colour(1.0, low, high) == high
    assert probability_colour(1e-6, low, high) == low
    middle = probability_colour(10 ** -1.5, low, high)
    assert middle == low.blend(high, 0.5)


def test_inspector_shows_whitespace_and_bars():
    assert visible(" the") == "·the"
    assert visible("\n") == "\\n"
    assert visible("") == "∅"
    assert probability_bar(1.0, 4) == "████"
    assert probability_bar(0.0, 4) == "    "
    assert probability_bar(0.5, 4) == "██  "
