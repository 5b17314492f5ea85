"""Tokenizing a JSON Lines corpus: tui-gpt's preparation against the plain loop and nanoGPT's way.

The corpus is generated once per size into the temp folder (`tui-gpt-bench/`):
one `{"text": ...}` document per line, words drawn from the-verdict.txt (its
words and punctuation, with their frequencies) in documents of varied length,
so that BPE does real work. Every contender reads it from the page cache and
writes GPT-2 ids as uint16, each document ended by <|endoftext|>:

- tui-gpt: `engine.data.prepare.prepare` on `engine.data.sources.open_source`,
  with its default workers (every core), into a fresh cache folder each round.
- single-threaded: read a line, `json.loads`, `encode_ordinary`, append the end
  token, write the ids (the plain way).
- datasets.map: nanoGPT's data/openwebtext/prepare.py: `load_dataset("json")`,
  `.map(num_proc=cores)` with `encode_ordinary` and the end token, then every
  id written into one uint16 memmap; its cache in a fresh temp folder each round.

Before timing, one run of each (the warm-up) is checked to give the same ids in
document order: tui-gpt's train and validation files are cut at their end
tokens and put back in document order with the same seeded choice.

The memory case runs `tui-gpt data prepare` in a fresh process per corpus size
and reports its peak resident set: memory holds one batch, whatever the size.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.data.prepare import is_validation, prepare
from engine.data.sources import open_source
from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer

from .report import CaseResult, Check, Row, Target
from .timing import time_alternating
from .train_memory import VERDICT, _run_child

CORPUS_VERSION = 1  # change it when the generator changes: the cached corpora are then made anew
CONTENDERS = ("tui-gpt", "single-threaded", "datasets.map")
_VAL_FRACTION, _SEED = 0.1, 0  # prepare()'s defaults, to put its splits back in document order


def corpus_path(megabytes: float) -> Path:
    """The generated corpus of about `megabytes` MB, made now if it is not in the temp folder yet."""
    folder = Path(tempfile.gettempdir()) / "tui-gpt-bench"
    path = folder / f"corpus-v{CORPUS_VERSION}-{megabytes:g}MB.jsonl"
    if not path.is_file():
        folder.mkdir(exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        _write_corpus(partial, int(megabytes * 1e6))
        os.replace(partial, path)
    return path


def _write_corpus(path: Path, size: int) -> None:
    words = np.array(VERDICT.read_text(encoding="utf-8").split(), dtype=object)
    rng = np.random.default_rng(1234)
    written = 0
    with path.open("w", encoding="utf-8") as file:
        while written < size:
            # Documents of a few dozen to several thousand words, in paragraphs.
            n_words = int(np.clip(rng.lognormal(6.0, 1.0), 20, 20_000))
            picked = words[rng.integers(0, len(words), n_words)]
            breaks = rng.integers(40, 200)
            paragraphs = [" ".join(picked[i : i + breaks]) for i in range(0, n_words, breaks)]
            line = json.dumps({"text": "\n\n".join(paragraphs)}) + "\n"
            file.write(line)
            written += len(line)


def tokenize_case(megabytes: float, repeats: int, title: str) -> CaseResult:
    result = CaseResult(title)
    corpus = corpus_path(megabytes)
    size = corpus.stat().st_size
    missing = _datasets_missing()
    names = [name for name in CONTENDERS if not (name == "datasets.map" and missing)]
    with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-tokenize-", dir=corpus.parent) as work:
        runs = {name: (lambda name=name: _run(name, corpus, Path(work) / name)) for name in names}
        # The warm-up: one run of each, whose ids are compared.
        ids = {name: _ids_in_document_order(runs[name]()) for name in names}
        reference = ids["single-threaded"]
        for name in names:
            if name != "single-threaded":
                result.checks.append(Check(f"{name}: the same {len(reference):,} ids as the single-threaded loop, "
                                           "in document order", np.array_equal(ids[name], reference)))
        del ids, reference
        samples = time_alternating(runs, repeats, warmup=0)
    cores = os.cpu_count() or 1
    notes = {"tui-gpt": f"engine.data.prepare, {cores} workers",
             "single-threaded": "json.loads + encode_ordinary per line",
             "datasets.map": f"nanoGPT's prepare.py, num_proc={cores}"}
    for name in names:
        sample = samples[name]
        result.rows.append(Row(name, sample.median, f"{size / 1e6:,.0f} MB", size / 1e6 / sample.median, "MB/s",
                               spread=sample.spread, note=notes[name]))
    if missing:
        result.checks.append(Check(f"datasets.map not measured: {missing}", True))
    for peer, goal in (("single-threaded", 1.7), ("datasets.map", 1.0)):
        ratio = result.ratio("tui-gpt", peer)
        if ratio is not None:
            result.targets.append(Target(f"tui-gpt MB/s ÷ {peer}", ratio, goal))
    return result


def tokenize_memory_case(sizes_mb: tuple[float, ...], title: str) -> CaseResult:
    """Peak RSS of `tui-gpt data prepare` in a fresh process, per corpus size."""
    result = CaseResult(title)
    peaks = []
    for megabytes in sizes_mb:
        corpus = corpus_path(megabytes)
        with tempfile.TemporaryDirectory(prefix="tui-gpt-bench-prepare-", dir=corpus.parent) as data_dir:
            start = time.perf_counter()
            peak = _run_child([sys.executable, "-m", "tui_gpt", "data", "prepare", str(corpus), "--data-dir", data_dir])
            seconds = time.perf_counter() - start
        peaks.append(peak)
        size = corpus.stat().st_size
        result.rows.append(Row(f"tui-gpt data prepare, {size / 1e6:,.0f} MB", seconds, "process",
                               size / 1e6 / seconds, "MB/s", f"peak RSS {peak / 1e6:,.0f} MB (fresh process)"))
    if len(peaks) > 1:
        growth = peaks[-1] / peaks[0]
        result.targets.append(Target(f"peak RSS at {sizes_mb[-1]:g} MB ÷ at {sizes_mb[0]:g} MB "
                                     "(flat: does not grow with the corpus)", growth, 1.1, higher_is_better=False))
    return result


def _run(name: str, corpus: Path, out: Path):
    """One contender's run into `out` (its previous round's output removed first): what it wrote."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if name == "tui-gpt":
        return prepare(open_source(corpus), out)
    if name == "single-threaded":
        return _single_threaded(corpus, out / "tokens.bin")
    return _datasets_map(corpus, out)


def _single_threaded(corpus: Path, path: Path) -> np.ndarray:
    enc = get_tokenizer()
    with corpus.open("rb") as lines, path.open("wb") as out:
        for line in lines:
            ids = enc.encode_ordinary(json.loads(line)["text"])
            ids.append(END_OF_TEXT_ID)
            np.asarray(ids, dtype=np.uint16).tofile(out)
    return np.memmap(path, dtype=np.uint16, mode="r")


def _datasets_map(corpus: Path, out: Path) -> np.ndarray:
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    enc = get_tokenizer()

    def process(example):
        ids = enc.encode_ordinary(example["text"])
        ids.append(END_OF_TEXT_ID)
        return {"ids": ids, "len": len(ids)}

    cache = out / "hf-cache"  # never the user's cache, never reused between rounds
    dataset = load_dataset("json", data_files=str(corpus), split="train", cache_dir=str(cache))
    tokenized = dataset.map(process, remove_columns=["text"], num_proc=os.cpu_count() or 1)
    total = int(np.sum(tokenized["len"], dtype=np.uint64))
    ids = np.memmap(out / "tokens.bin", dtype=np.uint16, mode="w+", shape=(total,))
    shards = max(1, min(1024, len(tokenized)))
    at = 0
    for index in range(shards):
        batch = np.concatenate(tokenized.shard(num_shards=shards, index=index, contiguous=True)
                               .with_format("numpy")["ids"])
        ids[at : at + len(batch)] = batch
        at += len(batch)
    ids.flush()
    return ids


def _ids_in_document_order(written) -> np.ndarray:
    """A contender's ids; tui-gpt's train and validation ids put back in document order (each ends at its end token)."""
    if isinstance(written, np.ndarray):
        return written
    data = written
    splits = {}
    for name, tokens in (("train", data.train), ("val", data.val)):
        array = tokens[0 : len(tokens)]
        ends = np.flatnonzero(array == END_OF_TEXT_ID) + 1
        splits[name] = iter(np.split(array, ends[:-1]) if len(ends) else [])
    n_documents = data.meta["train_documents"] + data.meta["val_documents"]
    pieces = [next(splits["val" if is_validation(i, _VAL_FRACTION, _SEED) else "train"]) for i in range(n_documents)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint16)


def _datasets_missing() -> str | None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        return "the datasets package is not installed (an optional extra)"
    return None
