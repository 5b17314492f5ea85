"""The `tui-gpt` command line: help, errors as one line, generate, runs, and a tiny training run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from engine.runs.events import CheckpointSaved, EvalDone, MetricsWriter, RunEnded, RunStarted, SampleGenerated, StepDone
from engine.runs.store import RunStore
from tui_gpt.app.panes.runs.runs_pane import run_row
from tui_gpt.app.panes.train.run_progress import describe_progress
from tui_gpt.cli import commands
from tui_gpt.cli import main as cli
from tui_gpt.cli.main import main
from tui_gpt.cli.progress import TrainingProgress

REPO = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--preset", "gpt-nano", "--context-length", "32", "--batch-size", "2", "--max-steps", "3",
              "--eval-freq", "1", "--eval-iter", "1", "--sample-tokens", "5"]


def run_module(*args: str, data_dir: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python -m tui_gpt ARGS` as a user would run it."""
    env = {**os.environ, "TUI_GPT_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tui_gpt", *args], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tui-gpt: error: ")


@pytest.fixture
def corpus(tmp_path, verdict_text) -> Path:
    path = tmp_path / "verdict.txt"
    path.write_text(verdict_text, encoding="utf-8")
    return path


# -- startup and help ----------------------------------------------------------------


def test_help_as_a_module_lists_commands_and_exit_codes(tmp_path):
    result = run_module("--help", data_dir=tmp_path)
    assert result.returncode == 0
    for word in ("train", "runs", "generate", "exit codes", "130"):
        assert word in result.stdout
    assert result.stderr == ""


def test_train_help_lists_every_training_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--corpus", "--recipe", "--resume", "--init-from", "--context-length", "--grad-accum", "--min-lr",
                 "--keep-last", "--checkpoint-every", "--start-context", "--sample-tokens", "--precision"):
        assert flag in out


def test_run_name_is_the_spelling_of_the_run_on_every_command():
    parser = cli.build_parser()
    assert parser.parse_args(["train", "--run-name", "r1"]).run_name == "r1"
    assert parser.parse_args(["generate", "--run-name", "r1"]).run_name == "r1"


def test_torchrun_passes_run_name_on_to_the_command():
    from torch.distributed.run import get_args_parser

    torchrun = get_args_parser().parse_args(["--nproc-per-node=2", "-m", "tui_gpt", "train", "--run-name", "big"])
    assert torchrun.training_script_args == ["train", "--run-name", "big"]


@pytest.mark.parametrize("args", [["train", "--max-step", "5"], ["train", "--run-n", "r1"],
                                  ["generate", "--model", "gpt-nano", "--temp", "1"]])
def test_no_option_is_matched_by_a_prefix(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["train", "--run", "r1"], ["generate", "--run=r1", "--prompt", "x"]])
def test_the_old_run_option_gets_a_one_line_hint(capsys, args):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "--run-name NAME" in err


def test_an_explicitly_empty_run_name_is_an_error(data_dir, corpus, capsys):
    assert main(["train", "--corpus", str(corpus), "--run-name", "", *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "--run-name must not be empty" in err
    assert not (data_dir / "runs").exists() or not any((data_dir / "runs").iterdir())


def test_generate_into_a_closed_pipe_stops_quietly(data_dir):
    env = {**os.environ, "TUI_GPT_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tui_gpt", "generate", "--model", "gpt-nano", "--prompt", "Hi",
               "--max-new-tokens", "200"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.read(2)
    process.stdout.close()  # as `| head -c 2` does
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipeError" not in err


def test_no_command_opens_the_app_with_the_data_dir(monkeypatch, tmp_path):
    opened = []
    fake_app = types.ModuleType("tui_gpt.app.app")
    fake_app.run_app = lambda data_dir=None: opened.append(data_dir)
    monkeypatch.setitem(sys.modules, "tui_gpt.app.app", fake_app)
    assert main(["--data-dir", str(tmp_path)]) == 0
    assert opened == [tmp_path]


# -- errors: one line, the right exit code ---------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["train", "--preset", "gpt-huge"], "unknown preset 'gpt-huge'"),
    (["train", "--lr", "-0.1"], "'lr' must be a positive number"),
    (["train", "--recipe", "nope"], "unknown recipe 'nope'"),
    (["train", "--max-steps", "0"], "'max_steps' must be an integer >= 1"),
    (["train", "--resume"], "--resume needs"),
    (["generate", "--model", "gpt-nano", "--prompt", "x", "--top-p", "1.5"], "--top-p"),
    (["generate", "--model", "gpt-nano", "--prompt", "x", "--max-new-tokens", "-1"], "--max-new-tokens"),
    (["generate", "--model", "gpt-nano", "--prompt", "x", "--best"], "--best goes with --run-name"),
])
def test_bad_options_fail_with_one_line(data_dir, capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert expected in err


def test_missing_corpus_fails_with_one_line(data_dir, tmp_path, capsys):
    pytest.importorskip("engine.training.trainer")
    missing = tmp_path / "no-such-corpus.txt"
    assert main(["train", "--corpus", str(missing), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "no-such-corpus.txt" in err
    assert not (data_dir / "runs").exists() or not any((data_dir / "runs").iterdir())


def test_resuming_a_missing_run_fails_with_one_line(data_dir, capsys):
    assert main(["train", "--run-name", "ghost", "--resume"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "ghost" in err


@pytest.mark.parametrize("source", [["--run-name", "ghost"], ["--checkpoint", "no/such/checkpoint"], ["--model", "gpt-huge"]])
def test_generate_from_a_missing_source_fails_with_one_line(data_dir, capsys, source):
    assert main(["generate", *source, "--prompt", "Hello"]) == 2
    assert_one_line_error(capsys.readouterr().err)


def test_unwritable_data_dir_fails_with_one_line(tmp_path, corpus, capsys):
    pytest.importorskip("engine.training.trainer")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # A data dir below a regular file cannot be created, even by root.
    assert main(["train", "--data-dir", str(blocker / "data"), "--corpus", str(corpus), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert str(blocker) in err


def test_generate_needs_a_model_source(data_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--prompt", "Hello"])
    assert exit_info.value.code == 2
    assert "one of the arguments --run-name --checkpoint --model is required" in capsys.readouterr().err


def test_unexpected_errors_are_one_line_with_the_traceback_in_a_log(data_dir, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(commands, "list_runs", broken)
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("tui-gpt: internal error: RuntimeError: something broke (details in ")
    log_path = Path(err.strip().split("(details in ", 1)[1].rstrip(")"))
    assert log_path.is_relative_to(data_dir)
    log = log_path.read_text(encoding="utf-8")
    assert "Traceback" in log and "in broken" in log


def test_a_broken_engine_import_still_ends_in_one_line(data_dir, capsys, monkeypatch, tmp_path):
    def torch_missing(args):
        raise ModuleNotFoundError("No module named 'torch'")

    monkeypatch.setattr(commands, "list_runs", torch_missing)
    monkeypatch.setitem(sys.modules, "engine.runs.store", None)  # importing it now fails too
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tui-gpt: internal error: ModuleNotFoundError: No module named 'torch' (details in ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" in (tmp_path / "tui-gpt-internal-errors.log").read_text(encoding="utf-8")


def test_out_of_memory_suggests_smaller_settings(data_dir, capsys, monkeypatch):
    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(commands, "list_runs", out_of_memory)
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "--batch-size" in err and "--context-length" in err


def test_ctrl_c_exits_130_quietly(data_dir, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "list_runs", interrupted)
    assert main(["runs"]) == 130
    assert capsys.readouterr().err == ""


# -- generate --------------------------------------------------------------------------------------


def test_generate_from_a_fresh_preset_streams_reproducibly(data_dir, capsys):
    args = ["generate", "--model", "gpt-nano", "--prompt", "Every effort moves you", "--max-new-tokens", "8",
            "--temperature", "1.0", "--top-k", "50", "--seed", "7"]
    outputs = []
    for _ in range(2):
        assert main(args) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("Every effort moves you")
    assert outputs[0].endswith("\n") and len(outputs[0]) > len("Every effort moves you\n")
    assert main([*args[:-1], "8"]) == 0
    assert capsys.readouterr().out != outputs[0]


def test_generate_reads_the_prompt_from_stdin_when_piped(data_dir):
    result = run_module("generate", "--model", "gpt-nano", "--max-new-tokens", "3", "--seed", "1",
                        data_dir=data_dir, stdin="Once upon a time")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Once upon a time")
    assert "Traceback" not in result.stderr


def test_ctrl_c_during_generation_keeps_the_text(data_dir, capsys, monkeypatch):
    import engine.model.generation

    real_stream = engine.model.generation.stream

    def interrupted_stream(*args, **kwargs):
        for token in real_stream(*args, **kwargs):
            if token.index == 2:
                raise KeyboardInterrupt
            yield token

    monkeypatch.setattr(engine.model.generation, "stream", interrupted_stream)
    assert main(["generate", "--model", "gpt-nano", "--prompt", "Hello", "--max-new-tokens", "10",
                 "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Hello") and out.endswith("\n") and len(out) > len("Hello\n")


# -- runs ------------------------------------------------------------------------------------------


def test_runs_on_an_empty_data_dir(data_dir, capsys):
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.strip() == f"no runs yet in {data_dir}"
    assert main(["runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    elsewhere = data_dir.parent / "elsewhere"
    for args in (["--data-dir", str(elsewhere), "runs"], ["runs", "--data-dir", str(elsewhere)]):
        assert main(args) == 0
        assert capsys.readouterr().out.strip() == f"no runs yet in {elsewhere}"


# -- a tiny run, end to end ----------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_train_then_list_then_generate_then_delete(data_dir, corpus, capsys, monkeypatch):
    pytest.importorskip("engine.training.trainer")
    assert main(["train", "--corpus", str(corpus), "--run-name", "tiny", *TINY_TRAIN]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out  # not a terminal: plain lines
    assert f"run tiny: {data_dir / 'runs' / 'tiny'}" in out
    for line_start in ("step 1/3", "eval at step 1:", "sample at step 1: Every effort moves you",
                       "checkpoint at step 3", "step 3/3"):
        assert any(line.startswith(line_start) for line in out.splitlines()), line_start
    assert "run tiny finished at step 3" in out

    assert main(["runs", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "tiny" and listed["state"] == "finished" and listed["steps"] == 3
    assert listed["best_val_loss"] > 0 and listed["size_bytes"] > 0
    assert main(["runs"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:2] == ["NAME", "MODEL"] and row.split()[0] == "tiny" and "finished" in row

    for best in ([], ["--best"]):
        assert main(["generate", "--run-name", "tiny", *best, "--prompt", "Every effort", "--max-new-tokens", "4"]) == 0
        assert capsys.readouterr().out.startswith("Every effort")

    # Deleting asks first on a terminal, and needs --yes otherwise.
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    assert main(["runs", "delete", "tiny"]) == 0
    assert "nothing deleted" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["runs", "delete", "tiny"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["runs", "delete", "tiny", "--yes"]) == 0
    assert main(["runs"]) == 0
    assert capsys.readouterr().out.strip().endswith("deleted run tiny\nno runs yet in " + str(data_dir))


def test_stop_request_saves_and_resume_finishes(data_dir, corpus, capsys, monkeypatch):
    pytest.importorskip("engine.training.trainer")
    import engine.training.signals

    class StopAtOnce(engine.training.signals.GracefulStop):
        def install(self):
            self.requested = True  # as if Ctrl-C came during the first step
            return self

    monkeypatch.setattr(engine.training.signals, "GracefulStop", StopAtOnce)
    assert main(["train", "--corpus", str(corpus), "--run-name", "halted", *TINY_TRAIN]) == 3
    out = capsys.readouterr().out
    assert "run halted stopped at step 1" in out
    assert "tui-gpt train --run-name halted --resume" in out

    monkeypatch.undo()
    monkeypatch.setenv("TUI_GPT_DATA_DIR", str(data_dir))
    assert main(["train", "--run-name", "halted", "--resume", "--max-steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "from step 1 to 4" in out and "run halted finished at step 4" in out


def test_resuming_with_the_starting_command_works(data_dir, corpus, capsys):
    pytest.importorskip("engine.training.trainer")
    start = ["train", "--corpus", str(corpus), "--run-name", "same", *TINY_TRAIN]
    assert main(start) == 0
    assert main([*start, "--resume", "--max-steps", "5"]) == 0  # the last --max-steps counts
    assert "run same finished at step 5" in capsys.readouterr().out


@pytest.mark.parametrize("change, named", [(["--preset", "gpt-micro"], ["--preset", "gpt-nano", "gpt-micro"]),
                                           (["--context-length", "64"], ["--context-length", "32", "64"]),
                                           (["--recipe", "book"], ["--preset", "gpt-nano", "gpt2-small"])])
def test_resume_refuses_a_different_model_naming_both_values(data_dir, corpus, capsys, change, named):
    pytest.importorskip("engine.training.trainer")
    start = ["train", "--corpus", str(corpus), "--run-name", "kept", *TINY_TRAIN]
    assert main(start) == 0
    capsys.readouterr()
    assert main(["train", "--run-name", "kept", "--resume", *change]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert f"{named[0]} cannot be changed when resuming: the run has {named[1]}, not {named[2]}" in err


def test_resume_from_another_directory_uses_the_recorded_corpus(data_dir, corpus, tmp_path, capsys, monkeypatch):
    pytest.importorskip("engine.training.trainer")
    monkeypatch.chdir(corpus.parent)
    assert main(["train", "--corpus", corpus.name, "--run-name", "here", *TINY_TRAIN]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / corpus.name).write_text("another text with the same name. " * 400, encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["train", "--run-name", "here", "--resume", "--max-steps", "4"]) == 0
    captured = capsys.readouterr()
    assert "run here finished at step 4" in captured.out
    assert "corpus changed" not in captured.out + captured.err


@pytest.mark.parametrize("what", ["changed", "gone"])
def test_resume_stops_when_the_recorded_corpus_changed_or_is_gone_unless_one_is_named(
        data_dir, corpus, tmp_path, capsys, what):
    pytest.importorskip("engine.training.trainer")
    assert main(["train", "--corpus", str(corpus), "--run-name", "moved", *TINY_TRAIN]) == 0
    text = corpus.read_text(encoding="utf-8")
    if what == "changed":
        corpus.write_text(text.upper(), encoding="utf-8")
    else:
        corpus.unlink()
    capsys.readouterr()
    assert main(["train", "--run-name", "moved", "--resume", "--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert f"the run's corpus {corpus} {'changed' if what == 'changed' else 'is gone'}" in err and "--corpus" in err
    named = tmp_path / "named.txt"
    named.write_text(text, encoding="utf-8")
    assert main(["train", "--run-name", "moved", "--resume", "--max-steps", "4", "--corpus", str(named)]) == 0
    assert "run moved finished at step 4" in capsys.readouterr().out


# -- progress display ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def step(index: int, loss: float = 5.0, time: float = 100.0) -> StepDone:
    return StepDone(step=index, epoch=0, tokens_seen=64 * (index + 1), loss=loss, lr=4e-4, tokens_per_sec=1000.0,
                    step_time=0.5, time=time)


def test_live_progress_redraws_one_line_and_prints_events_above_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    progress = TrainingProgress(out, live=True, epochs=2, min_redraw_interval=0.0)
    progress.on_event(RunStarted(run="r", resumed=False, step=0, total_steps=4, n_params=1000, device="cpu", time=100.0))
    progress.on_event(step(0, time=102.0))
    progress.on_event(EvalDone(step=0, epoch=0, tokens_seen=64, train_loss=5.0, val_loss=6.0, train_ppl=148.4,
                               val_ppl=403.4))
    progress.on_event(step(1, loss=4.5, time=104.0))
    progress.on_event(RunEnded(step=2, state="stopped"))
    text = out.getvalue()
    assert text.endswith("\n")
    bars = [part.strip() for part in text.split("\r\x1b[K") if part.startswith("step ")]
    while_running, last = bars[-2], bars[-1]
    assert last.startswith("step 2/4") and "50%" in last
    assert "epoch 1/2" in last and "loss 4.500" in last and "val 6.000" in last and "1,000 tok/s" in last
    assert "ETA 4s" in while_running  # two steps in 4 s, two to go
    assert "ETA" not in last  # the run ended
    assert "\r\x1b[Keval at step 1: train loss 5.000 (ppl 148.4), val loss 6.000 (ppl 403.4)\n" in text


def test_live_progress_fits_a_narrow_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    progress = TrainingProgress(out, live=True, epochs=2, min_redraw_interval=0.0)
    progress.on_event(RunStarted(run="r", resumed=False, step=0, total_steps=4, n_params=1000, device="cpu", time=100.0))
    progress.on_event(step(0, loss=3.25, time=130.0))
    line = out.getvalue().split("\r\x1b[K")[-1]
    assert line == "step 1/4 | loss 3.250 | ETA 1m30s"


def test_live_progress_throttles_redraws():
    out, clock = io.StringIO(), FakeClock()
    progress = TrainingProgress(out, live=True, clock=clock, min_redraw_interval=1.0)
    progress.on_event(RunStarted(run="r", resumed=False, step=0, total_steps=100, n_params=1000, device="cpu"))
    for index in range(10):
        progress.on_event(step(index))  # all at the same instant
    assert out.getvalue().count("step ") == 1


def test_plain_progress_logs_every_n_steps_and_every_event():
    out = io.StringIO()
    progress = TrainingProgress(out, live=False, log_every=5)
    progress.on_event(RunStarted(run="r", resumed=True, step=3, total_steps=12, n_params=1000, device="cuda:0",
                                 world_size=2))
    for index in range(3, 12):
        progress.on_event(step(index))
    progress.on_event(SampleGenerated(step=11, epoch=0, tokens_seen=1, prompt="Hi", text="Hi\nthere"))
    progress.on_event(CheckpointSaved(step=12, path="/runs/r/checkpoints/step-00000012", val_loss=2.0, best=True))
    progress.log("warning: something to know")
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "training 1,000 parameters on cuda:0 x2 from step 3 to 12"
    step_lines = [line.split(" | ")[0] for line in lines if line.startswith("step ")]
    assert step_lines == ["step 4/12", "step 5/12", "step 10/12", "step 12/12"]
    assert "lr 4.00e-04" in lines[1]
    assert lines[-3:] == ["sample at step 12: Hi there",
                          "checkpoint at step 12 saved (best so far): /runs/r/checkpoints/step-00000012",
                          "warning: something to know"]


def test_the_cli_and_the_app_show_the_same_eta_and_best_loss_for_the_same_events(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    events = [RunStarted(run="r", resumed=False, step=0, total_steps=10, n_params=1000, device="cpu", time=100.0),
              step(0, time=103.0),
              EvalDone(step=0, epoch=0, tokens_seen=64, train_loss=5.0, val_loss=5.25, train_ppl=1.0, val_ppl=1.0),
              step(1, time=106.0),
              EvalDone(step=1, epoch=0, tokens_seen=128, train_loss=4.0, val_loss=5.5, train_ppl=1.0, val_ppl=1.0),
              step(2, time=109.0)]
    run = RunStore().create("r", {})
    writer = MetricsWriter(run.metrics_path)
    out = io.StringIO()
    progress = TrainingProgress(out, live=True, min_redraw_interval=0.0)
    for event in events:
        writer.write(event)  # as the trainer does: the file for the app, the events for its own line
        progress.on_event(event)
    writer.close()

    summary = RunStore().list()[0]  # what the app polls and `tui-gpt runs` lists
    app_progress = describe_progress("r", "running", summary.progress, summary).plain
    cli_line = out.getvalue().split("\r\x1b[K")[-1]
    assert "ETA 21s" in cli_line and "ETA 21s" in app_progress  # 3 s a step, 7 to go
    assert main(["runs"]) == 0
    cli_row = capsys.readouterr().out.splitlines()[1]
    assert "5.250" in cli_row.split() and "5.250" in run_row(summary)  # the best, not the latest (5.500)
