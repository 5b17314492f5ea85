"""Hostile and careless files: every file under the data dir, and every file named on the command
line, is untrusted input. Each case ends in one line and the right exit code, writes nothing
outside the data dir, stays within a generous memory ceiling, never hangs, and spoils only itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.errors import CheckpointError, RunError
from engine.runs.events import EvalDone, MetricsReader, MetricsWriter, StepDone, event_from_dict
from engine.runs.store import RunStore
from engine.runs.untrusted_files import UntrustedFileError, parse_json, read_json
from tui_gpt.app.services.generation_job import GenerationSettings
from tui_gpt.app.services.model_catalog import ModelChoice

REPO = Path(__file__).resolve().parents[1]
# Generous for a tiny case: a Python process with torch imported takes about 300 MB.
MEMORY_CEILING_MB = 1024


# `python -m tui_gpt`, writing the process's own peak RSS (VmHWM) to a file as it exits. Read from
# inside: getrusage's ru_maxrss of a child starts from its parent's peak (Linux carries it over exec),
# and the test process may be large.
_MEASURED_CLI = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)

def record_peak():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(record_peak)
sys.argv[0] = "tui-gpt"
runpy.run_module("tui_gpt", run_name="__main__", alter_sys=True)
"""


def run_cli(*args: str, data_dir: Path, stdin=subprocess.DEVNULL, timeout: float = 120) -> tuple[int, str, str, float]:
    """`python -m tui_gpt ARGS`: exit code, stdout, stderr and the process's peak RSS in MB."""
    env = {**os.environ, "TUI_GPT_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        process = subprocess.Popen([sys.executable, "-c", _MEASURED_CLI, peak.name, *args], cwd=REPO, env=env,
                                   stdin=stdin, stdout=out, stderr=err)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"hung for more than {timeout} s") from None
        out.seek(0)
        err.seek(0)
        peak_kb = int(peak.read() or 0)
        return code, out.read().decode(), err.read().decode(), peak_kb / 1024


def assert_one_line(err: str) -> str:
    """The one error line (what the command said it was doing before it may precede it)."""
    assert "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if line.startswith("tui-gpt: error: ")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    return errors[0]


def make_run(store: RunStore, name: str, best_val: float = 5.0) -> Path:
    run = store.create(name, {"model": {"context_length": 32, "emb_dim": 32, "n_heads": 2, "n_layers": 2},
                              "train": {}, "corpus": {}})
    run.write_status("finished", step=3)
    writer = MetricsWriter(run.metrics_path)
    writer.write(StepDone(step=0, epoch=0, tokens_seen=64, loss=6.0, lr=1e-3, tokens_per_sec=100.0, step_time=0.1))
    writer.write(EvalDone(step=0, epoch=0, tokens_seen=64, train_loss=best_val, val_loss=best_val,
                          train_ppl=1.0, val_ppl=1.0))
    writer.close()
    return run.dir


@pytest.fixture
def store(data_dir) -> RunStore:
    return RunStore(data_dir)


@pytest.fixture
def outside(tmp_path) -> Path:
    """A user's file outside the data dir that nothing may touch."""
    path = tmp_path / "precious.txt"
    path.write_text("the user's own words\n")
    return path


# --- rule 1: nothing is written through a link -----------------------------------------------


def test_a_lock_linked_to_a_users_file_is_neither_truncated_nor_overwritten(store, data_dir, outside):
    run_dir = make_run(store, "victim")
    (run_dir / ".lock").unlink(missing_ok=True)
    (run_dir / ".lock").symlink_to(outside)
    code, _, err, _ = run_cli("runs", "delete", "victim", "--yes", data_dir=data_dir)
    assert code == 2
    assert "symbolic link" in assert_one_line(err)
    assert outside.read_text() == "the user's own words\n"
    assert run_dir.is_dir()  # refused, so nothing was deleted either


def test_metrics_and_log_linked_outside_are_never_appended_to(store, outside):
    run_dir = make_run(store, "linked")
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(UntrustedFileError, match="symbolic link"):
        MetricsWriter(run_dir / "metrics.jsonl")
    assert outside.read_text() == "the user's own words\n"


def test_a_run_folder_linked_outside_is_not_listed_sized_or_deleted(store, data_dir, tmp_path):
    make_run(store, "real")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "big.bin").write_bytes(b"x" * 1000)
    (store.runs_dir / "escape").symlink_to(elsewhere)
    code, out, err, _ = run_cli("runs", "--json", data_dir=data_dir)
    assert code == 0, err
    assert [run["name"] for run in json.loads(out)] == ["real"]
    code, _, err, _ = run_cli("runs", "delete", "escape", "--yes", data_dir=data_dir)
    assert code == 2 and "link" in assert_one_line(err)
    assert (elsewhere / "big.bin").exists()


# --- rule 2: sizes read from files are bounded before anything is allocated --------------------


def test_a_config_claiming_a_billion_layers_lists_in_bounded_memory(store, data_dir):
    make_run(store, "honest")
    huge = make_run(store, "huge")
    config = json.loads((huge / "config.json").read_text())
    config["model"]["n_layers"] = 1_000_000_000
    (huge / "config.json").write_text(json.dumps(config))
    code, out, err, peak_mb = run_cli("runs", "--json", data_dir=data_dir)
    assert code == 0, err
    assert {run["name"] for run in json.loads(out)} == {"honest", "huge"}
    assert peak_mb < MEMORY_CEILING_MB


def test_a_checkpoint_config_claiming_a_billion_layers_is_refused_in_one_line(tmp_path, data_dir):
    from safetensors.torch import save_file
    import torch

    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"tok_emb.weight": torch.zeros(4, 4)}, folder / "model.safetensors")
    (folder / "model.json").write_text(json.dumps({"format": 1, "n_layers": 1_000_000_000}))
    code, _, err, peak_mb = run_cli("generate", "--model", str(folder / "model.safetensors"), "--prompt", "hi",
                                    data_dir=data_dir)
    assert code == 2
    assert "n_layers" in assert_one_line(err)
    assert peak_mb < MEMORY_CEILING_MB


# --- rule 3: reads are bounded and never hang -------------------------------------------------


def test_a_prompt_from_an_endless_stdin_is_refused_in_bounded_memory(data_dir):
    with open("/dev/zero", "rb") as zero:
        code, _, err, peak_mb = run_cli("generate", "--model", "gpt-nano", "--max-new-tokens", "1",
                                        data_dir=data_dir, stdin=zero)
    assert code == 2
    assert "longer than" in assert_one_line(err)
    assert peak_mb < MEMORY_CEILING_MB


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_checkpoint_file_that_is_a_pipe_or_device_is_refused_without_hanging(store, data_dir, kind, tiny_config):
    import torch

    from engine.model.gpt import GPTModel
    from engine.training.checkpointing import save_checkpoint

    run = store.create("pipes", {"model": tiny_config.to_dict(), "train": {}, "corpus": {}})
    folder = save_checkpoint(run.checkpoints_dir, 1, GPTModel(tiny_config), {"x": torch.zeros(1)}, {}, val_loss=1.0)
    target = folder / "model.safetensors"
    manifest = json.loads((folder / "COMPLETE").read_text())
    manifest["files"]["model.safetensors"]["size"] = 0  # what a pipe or /dev/zero reports
    (folder / "COMPLETE").write_text(json.dumps(manifest))
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    code, _, err, _ = run_cli("generate", "--run-name", "pipes", "--prompt", "hi", data_dir=data_dir, timeout=60)
    assert code == 2
    assert "not a regular file" in assert_one_line(err)


def test_deeply_nested_json_is_bad_json_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_json(path)
    with pytest.raises(ValueError):
        parse_json("[" * 100_000)


def test_an_oversized_json_file_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(" " * 2048 + "{}")
    with pytest.raises(UntrustedFileError, match="larger than"):
        read_json(path, limit=1024)


# --- rule 4: one bad file spoils only itself --------------------------------------------------


def test_malformed_metrics_lines_are_skipped_and_the_rest_kept(store, data_dir):
    run_dir = make_run(store, "damaged", best_val=4.0)
    with open(run_dir / "metrics.jsonl", "a") as f:
        for junk in ("[1, 2]", "42", '"text"', "null",
                     '{"event": "eval", "step": "five", "epoch": 0, "tokens_seen": 1, "train_loss": 1, '
                     '"val_loss": 1, "train_ppl": 1, "val_ppl": 1}',
                     '{"event": "step", "step": 1}', '{"event": ["eval"]}'):
            f.write(junk + "\n")
    make_run(store, "healthy", best_val=3.0)
    events = MetricsReader(run_dir / "metrics.jsonl").read_new()
    assert [type(e).__name__ for e in events] == ["StepDone", "EvalDone"]
    code, out, err, _ = run_cli("runs", "--json", data_dir=data_dir)
    assert code == 0, err
    best = {run["name"]: run["best_val_loss"] for run in json.loads(out)}
    assert best == {"damaged": 4.0, "healthy": 3.0}


def test_event_fields_of_the_wrong_type_make_no_event():
    assert event_from_dict({"event": "eval", "step": 1, "epoch": 0, "tokens_seen": 2, "train_loss": "low",
                            "val_loss": 1.0, "train_ppl": 1.0, "val_ppl": 1.0}) is None
    assert event_from_dict([1, 2]) is None
    eval_done = event_from_dict({"event": "eval", "step": 1, "epoch": 0, "tokens_seen": 2, "train_loss": None,
                                 "val_loss": 1.0, "train_ppl": 1.0, "val_ppl": 1.0})
    assert isinstance(eval_done, EvalDone)  # null is how non-finite losses are written


def test_a_status_of_the_wrong_types_does_not_break_the_listing(store, data_dir):
    run_dir = make_run(store, "odd")
    (run_dir / "status.json").write_text(json.dumps({"state": 7, "pid": "me", "step": [1], "message": {"a": 1}}))
    make_run(store, "fine")
    code, out, err, _ = run_cli("runs", "--json", data_dir=data_dir)
    assert code == 0, err
    assert {run["name"] for run in json.loads(out)} == {"odd", "fine"}


@pytest.mark.parametrize("state", [
    [1, 2],
    {"model": "run"},
    {"model": {"kind": "run", "name": "../../etc", "checkpoint": "latest"}},
    {"model": {"kind": "run", "name": "x", "checkpoint": "newest"}},
    {"generation": {"max_new_tokens": "many", "temperature": -1}},
    {"generation": [1]},
])
def test_remembered_app_state_is_checked_like_input(state):
    values = state if isinstance(state, dict) else {}
    model, generation = values.get("model"), values.get("generation")
    if model is not None:
        with pytest.raises(ValueError):
            ModelChoice.from_dict(model)
    if generation is not None:
        with pytest.raises(ValueError):
            GenerationSettings.from_dict(generation)


# --- rule 6 and 7: bad input leaves nothing behind; names and paths stay inside -----------------


def test_an_empty_corpus_path_is_an_error_not_the_current_folder(data_dir):
    code, _, err, _ = run_cli("train", "--corpus", "", "--preset", "gpt-nano", "--max-steps", "1", data_dir=data_dir)
    assert code == 2
    assert "corpus path is empty" in assert_one_line(err)
    assert not (data_dir / "runs").exists() or not any((data_dir / "runs").iterdir())


def test_a_run_name_too_long_for_the_file_system_is_refused_before_anything_is_made(store):
    name = "試" * 80  # 80 characters, 240 bytes: once prefixed, over the 255-byte limit
    with pytest.raises(RunError, match="bytes"):
        store.create(name, {})
    assert not store.runs_dir.exists() or not any(store.runs_dir.iterdir())


def test_loading_a_checkpoint_never_follows_a_linked_run_folder(store, tmp_path):
    store.runs_dir.mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (store.runs_dir / "linked").symlink_to(tmp_path / "other")
    with pytest.raises(RunError):
        store.open("linked")


def test_a_checkpoint_folder_with_a_linked_file_in_place_of_weights_is_named(tmp_path, tiny_config):
    import torch

    from engine.model.gpt import GPTModel
    from engine.training.checkpointing import save_checkpoint
    from engine.weights.checkpoint import load_model

    folder = save_checkpoint(tmp_path / "ck", 2, GPTModel(tiny_config), {"x": torch.zeros(1)}, {}, val_loss=1.0)
    os.unlink(folder / "model.safetensors")
    os.mkfifo(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(folder)


# --- rule 8: faults are named truly ---------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A data dir on an 8 MB tmpfs (needs root, which CI has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (it needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_filling_up_while_training_ends_the_run_as_failed_naming_the_write(small_disk, verdict_path):
    from engine.data.corpus import load_corpus
    from engine.data.token_cache import load_token_splits

    load_token_splits(load_corpus(verdict_path), small_disk / "cache", 0.9)  # what the run will read
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(small_disk / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - 24 * 1024)  # room for the run folder and a few metrics lines
    code, _, err, _ = run_cli("train", "--corpus", str(verdict_path), "--preset", "gpt-nano", "--context-length", "32",
                              "--batch-size", "2", "--max-steps", "400", "--eval-freq", "1", "--eval-iter", "1",
                              "--sample-tokens", "3", "--run-name", "filled", data_dir=small_disk, timeout=300)
    assert code == 1
    assert "disk full while writing" in assert_one_line(err)
    status = json.loads((small_disk / "runs" / "filled" / "status.json").read_text())
    assert status["state"] == "failed" and "disk full" in status["message"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_with_non_finite_values_are_refused_in_one_line(tmp_path, tiny_config, value):
    import torch

    from engine.model.gpt import GPTModel
    from engine.training.checkpointing import save_checkpoint
    from engine.weights.checkpoint import load_model

    model = GPTModel(tiny_config)
    with torch.no_grad():
        model.trf_blocks[0].att.W_query.weight[0, 0] = value
    folder = save_checkpoint(tmp_path / "ck", 1, model, {"x": torch.zeros(1)}, {}, val_loss=1.0)
    with pytest.raises(CheckpointError, match=r"holds non-finite values \(NaN or inf\) in trf_blocks.0.att.W_query.weight"):
        load_model(folder)


def test_a_file_hashed_ahead_gives_its_digest_and_a_file_changed_since_is_hashed_again(tmp_path):
    import hashlib
    import time

    from engine.runs.untrusted_files import file_sha256, hash_ahead

    kept, changed = tmp_path / "kept.bin", tmp_path / "changed.bin"
    kept.write_bytes(os.urandom(3 << 20))
    changed.write_bytes(b"before")
    hash_ahead([kept, changed, tmp_path / "missing.bin"])  # a file that cannot be read is left for later
    time.sleep(0.01)
    changed.write_bytes(b"after, and longer")
    assert file_sha256(kept) == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert file_sha256(changed) == hashlib.sha256(b"after, and longer").hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")


def test_a_stop_request_cuts_a_long_sample_short(tiny_config):
    from engine.model.gpt import GPTModel
    from engine.model.tokenizer import get_tokenizer
    from engine.training.loop import SAMPLE_PIECE, generate_sample

    model, tokenizer = GPTModel(tiny_config).eval(), get_tokenizer()
    asked = []

    def stop_after_the_first_piece() -> bool:
        asked.append(1)
        return len(asked) > 1

    cut = generate_sample(model, tokenizer, "cpu", "Hello", max_new_tokens=2000, should_stop=stop_after_the_first_piece)
    whole = generate_sample(model, tokenizer, "cpu", "Hello", max_new_tokens=SAMPLE_PIECE)
    assert cut == whole  # one piece, then the stop request: the same tokens as a sample of one piece


def test_a_checkpoint_whose_state_is_hash_valid_but_unusable_is_skipped_on_resume(data_dir, verdict_path):
    from engine.runs.checkpoints import MANIFEST, STATE_META, list_checkpoints, synced_file_record
    from engine.training.settings import TrainConfig
    from engine.training.trainer import train_run

    config = TrainConfig(corpus=str(verdict_path), batch_size=2, max_steps=4, checkpoint_every=2, eval_freq=2,
                         eval_iter=1, sample_tokens=0, keep_last=5, precision="fp32",
                         model_overrides={"context_length": 32})
    assert train_run(config, run_name="edited", data_dir=data_dir).state == "finished"
    newest = list_checkpoints(RunStore(data_dir).open("edited").checkpoints_dir)[0]
    # Edit the newest checkpoint's state and record the edit in its manifest: hashes match, contents don't fit.
    (newest.path / STATE_META).write_text(json.dumps({"position": {"no such field": 1}}))
    manifest = json.loads((newest.path / MANIFEST).read_text())
    manifest["files"][STATE_META] = synced_file_record(newest.path / STATE_META)
    (newest.path / MANIFEST).write_text(json.dumps(manifest))
    said = []
    outcome = train_run(config.with_overrides(max_steps=6), run_name="edited", data_dir=data_dir, resume=True,
                        log=said.append)
    assert outcome.state == "finished" and outcome.step == 6
    assert any(f"skipped checkpoint at step {newest.step}: its training state is unusable" in line for line in said)
    assert any("(step 2)" in line for line in said if line.startswith("resuming"))


def test_a_tampered_token_cache_is_rebuilt_not_trained_on(tmp_path, verdict_path):
    from engine.data.corpus import load_corpus
    from engine.data.token_cache import load_token_splits

    corpus = load_corpus(verdict_path)
    first = load_token_splits(corpus, tmp_path, 0.9)
    original = first.train[:].copy()
    train_bin = first.cache_path / "train.bin"
    data = bytearray(train_bin.read_bytes())
    data[10:12] = b"\x00\x00"  # one token changed; the size stays the same
    train_bin.write_bytes(bytes(data))
    again = load_token_splits(corpus, tmp_path, 0.9)
    assert again.built and (again.train[:] == original).all()
