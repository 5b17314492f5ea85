"""A document source tokenized once into memory-mapped uint16 shards, in parallel and resumably.

Layout of `<cache_dir>/prepared/<key>/` (key: the source's fingerprint with the
validation choice and the tokenizer):

    source.json                     what was prepared (written first, for `tui-gpt data list`)
    shard-000000.train.bin          GPT-2 ids of the shard's training documents, each ended by <|endoftext|>
    shard-000000.val.bin            ... of its validation documents
    shard-000000.json               written last, atomically: the shard is complete
    meta.json                       written when every shard is: the data set is complete

Documents are read in order and tokenized in batches of about BATCH_CHARS
characters by `workers` processes (engine.data.encoding), while this process
reads and parses the next batch and writes the previous one. Ids stay in numpy
arrays from tiktoken's buffer to the file: a Python int per token would cost
more than the encoding. A shard ends at the first batch boundary past SHARD_CHARS. Batches depend only on the
documents, so the shards (and their bytes) are the same for any number of
workers and whether or not the preparation was interrupted: a rerun skips the
documents of the complete shards and rewrites the rest. Memory holds one batch.

Validation: each document goes to validation when a hash of (seed, its index)
falls under `val_fraction`, which is stable as documents are added; or all the
documents of a separate validation source do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine.data.encoding import BatchEncoder
from engine.data.sources.base import DocumentSource
from engine.data.token_array import TOKEN_DTYPE, as_token_array, map_tokens
from engine.data.token_cache import cache_write_error
from engine.errors import CorpusError
from engine.model.tokenizer import END_OF_TEXT_ID, get_tokenizer
from engine.runs.atomic import WriteError, atomic_write_json, fsync_dir

PREPARED_FORMAT = 1
SHARD_CHARS = 256 * 2**20
BATCH_CHARS = 4 * 2**20
SPLITS = ("train", "val")
_END_OF_TEXT = np.array([END_OF_TEXT_ID], dtype=TOKEN_DTYPE)


@dataclass(frozen=True)
class Progress:
    bytes_read: int  # of the source on disk
    bytes_total: int
    tokens: int
    documents: int
    seconds: float


@dataclass(frozen=True)
class PreparedData:
    folder: Path
    meta: dict  # meta.json: totals and shards
    train: object  # 1-D token array (np.memmap or ConcatenatedTokens)
    val: object
    built: bool  # False: every shard was already there


def prepared_root(cache_dir: Path) -> Path:
    return Path(cache_dir) / "prepared"


def prepare(source: DocumentSource, cache_dir: Path, *, val_source: DocumentSource | None = None,
            val_fraction: float = 0.1, seed: int = 0, workers: int | None = None,
            on_progress: Callable[[Progress], None] | None = None, spec: str | None = None) -> PreparedData:
    """The source's prepared shards, tokenizing (or finishing) them now if needed."""
    description = {
        "format": PREPARED_FORMAT, "tokenizer": get_tokenizer().name, "name": source.name, "spec": spec or source.name,
        "fingerprint": source.fingerprint(),
        "validation": ({"source": val_source.name, "fingerprint": val_source.fingerprint()} if val_source
                       else {"fraction": val_fraction, "seed": seed}),
    }
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    folder = prepared_root(cache_dir) / key
    try:
        meta = _complete_meta(folder, description)
        built = meta is None
        if meta is None:
            meta = _build(source, val_source, folder, description, val_fraction, seed, workers or _usable_cores(),
                          on_progress)
    except WriteError:
        raise
    except OSError as error:
        raise cache_write_error(f"the prepared data of {source.name} in {folder}", error) from None
    return open_prepared(folder, meta, built)


def open_prepared(folder: Path, meta: dict, built: bool = False) -> PreparedData:
    arrays = {split: as_token_array([map_tokens(folder / f"{shard['name']}.{split}.bin", shard[f"{split}_tokens"])
                                     for shard in meta["shards"]]) for split in SPLITS}
    return PreparedData(folder, meta, arrays["train"], arrays["val"], built)


def read_meta(folder: Path) -> dict | None:
    """meta.json of a complete prepared folder (checked against its shard files), else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if all(_shard_files_match(folder, shard) for shard in meta["shards"]):
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _complete_meta(folder: Path, description: dict) -> dict | None:
    meta = read_meta(folder)
    return meta if meta is not None and meta.get("source") == description else None


def _shard_files_match(folder: Path, shard: dict) -> bool:
    return all((folder / f"{shard['name']}.{split}.bin").stat().st_size == shard[f"{split}_tokens"] * TOKEN_DTYPE.itemsize
               for split in SPLITS)


def _finished_shards(folder: Path, description: dict) -> list[dict]:
    """The complete shards of an earlier, interrupted preparation of the same source, in order."""
    try:
        if json.loads((folder / "source.json").read_text(encoding="utf-8")) != description:
            return []
    except (OSError, ValueError):
        return []
    shards = []
    for index in range(10**6):
        try:
            shard = json.loads((folder / f"{_shard_name(index)}.json").read_text(encoding="utf-8"))
            if not _shard_files_match(folder, shard):
                break
        except (OSError, ValueError, KeyError, TypeError):
            break
        shards.append(shard)
    return shards


def _build(source, val_source, folder: Path, description: dict, val_fraction: float, seed: int, workers: int,
           on_progress) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    shards = _finished_shards(folder, description)
    # Anything past the finished shards is an interrupted write: remove it before writing again.
    keep = {"source.json"} | {f"{s['name']}{suffix}" for s in shards for suffix in (".json", ".train.bin", ".val.bin")}
    for path in folder.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not shards:
        atomic_write_json(folder / "source.json", description)

    documents = _labelled_documents(source, val_source, val_fraction, seed)
    done_documents = shards[-1]["documents_end"] if shards else 0
    documents = islice(documents, done_documents, None)  # read again, not tokenized again
    started = time.monotonic()
    totals = {"tokens": sum(s["train_tokens"] + s["val_tokens"] for s in shards), "documents": done_documents}
    sources = [source] + ([val_source] if val_source else [])

    def report() -> None:
        if on_progress:
            on_progress(Progress(sum(s.bytes_read() for s in sources), sum(s.size_bytes for s in sources),
                                 totals["tokens"], totals["documents"], time.monotonic() - started))

    with BatchEncoder(workers, sum(s.size_bytes for s in sources)) as encoder:
        encoded_batches = _encoded(_batches(documents), encoder)
        item = next(encoded_batches, None)
        while item is not None:
            writer = _ShardWriter(folder, _shard_name(len(shards)), done_documents)
            with writer:
                while item is not None and writer.chars < SHARD_CHARS:
                    batch, encoded = item
                    writer.add(batch, encoded)
                    totals["tokens"] += sum(len(ids) + 1 for ids in encoded)
                    totals["documents"] += len(batch)
                    report()
                    item = next(encoded_batches, None)
                shards.append(writer.finish())
            done_documents = shards[-1]["documents_end"]
    warnings = [line for s in sources for line in s.warnings()]
    if not shards or not any(s["train_documents"] + s["val_documents"] for s in shards):
        raise CorpusError(f"no documents in {source.name}" + (f" ({warnings[0]})" if warnings else ""))
    meta = {"source": description, "shards": shards, "warnings": warnings,
            **{key: sum(s[key] for s in shards) for key in
               ("train_tokens", "val_tokens", "train_documents", "val_documents", "train_bytes", "val_bytes")}}
    atomic_write_json(folder / "meta.json", meta)
    return meta


def _labelled_documents(source, val_source, val_fraction: float, seed: int) -> Iterator[tuple[str, bool]]:
    """(document, goes to validation) for every document, in order."""
    if val_source is not None:
        return chain(zip(source.documents(), repeat(False)), zip(val_source.documents(), repeat(True)))
    return ((text, is_validation(index, val_fraction, seed)) for index, text in enumerate(source.documents()))


def is_validation(index: int, fraction: float, seed: int) -> bool:
    """Whether document `index` validates: a seeded hash, so the choice of one never moves another."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def _batches(documents: Iterator[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    batch: list[tuple[str, bool]] = []
    chars = 0
    for document in documents:
        batch.append(document)
        chars += len(document[0])
        if chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _encoded(batches: Iterator[list[tuple[str, bool]]], encoder: BatchEncoder,
             ) -> Iterator[tuple[list[tuple[str, bool]], list[np.ndarray]]]:
    """Each batch with its documents' ids; the next batch is read while the encoder works on this one."""
    pending = None
    for batch in batches:
        submitted = (batch, encoder.submit([text for text, _ in batch]))
        if pending is not None:
            yield pending[0], encoder.result(pending[1])
        pending = submitted
    if pending is not None:
        yield pending[0], encoder.result(pending[1])


def _shard_name(index: int) -> str:
    return f"shard-{index:06d}"


class _ShardWriter:
    """Writes one shard's two token files under temporary names; finish() puts them in place and records it."""

    def __init__(self, folder: Path, name: str, documents_start: int):
        self.folder, self.name = folder, name
        self.record = {"name": name, "documents_start": documents_start, "documents_end": documents_start,
                       **{f"{split}_{what}": 0 for split in SPLITS for what in ("tokens", "documents", "bytes")}}
        self.chars = 0
        self.temp = {split: folder / f".{name}.{split}.bin.tmp" for split in SPLITS}
        self.files = {split: open(self.temp[split], "wb") for split in SPLITS}
        self.finished = False

    def add(self, batch: list[tuple[str, bool]], encoded: list[np.ndarray]) -> None:
        parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
        for (text, validates), ids in zip(batch, encoded):
            split = "val" if validates else "train"
            parts[split] += (ids, _END_OF_TEXT)
            self.record[f"{split}_documents"] += 1
            self.record[f"{split}_bytes"] += len(text.encode("utf-8"))
            self.chars += len(text)
        for split, arrays in parts.items():
            if arrays:
                ids = np.concatenate(arrays)
                ids.tofile(self.files[split])
                self.record[f"{split}_tokens"] += len(ids)
        self.record["documents_end"] += len(batch)

    def finish(self) -> dict:
        for split in SPLITS:
            self.files[split].flush()
            os.fsync(self.files[split].fileno())
            self.files[split].close()
            os.replace(self.temp[split], self.folder / f"{self.name}.{split}.bin")
        fsync_dir(self.folder)
        atomic_write_json(self.folder / f"{self.name}.json", self.record)  # last: now the shard counts
        self.finished = True
        return self.record

    def __enter__(self) -> "_ShardWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        for split in SPLITS:
            self.files[split].close()
            if not self.finished:
                self.temp[split].unlink(missing_ok=True)


@dataclass(frozen=True)
class PreparedEntry:
    """A folder of the prepared-data cache, complete or not."""

    folder: Path
    description: dict  # source.json
    meta: dict | None  # None: an interrupted preparation (rerun it to finish)

    @property
    def name(self) -> str:
        return self.folder.name

    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.folder.iterdir() if path.is_file())


def list_prepared(cache_dir: Path) -> list[PreparedEntry]:
    root = prepared_root(cache_dir)
    entries = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            description = json.loads((folder / "source.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not ours, or removed while listing
        entries.append(PreparedEntry(folder, description, read_meta(folder)))
    return entries


def find_prepared(cache_dir: Path, name: str) -> PreparedEntry:
    """The entry whose key starts with `name`, or whose source is called `name` (one, or an error)."""
    entries = list_prepared(cache_dir)
    matches = [e for e in entries if e.name.startswith(name)] or [e for e in entries if e.description.get("name") == name]
    if len(matches) != 1:
        known = ", ".join(f"{e.name[:12]} ({e.description.get('name')})" for e in entries) or "none"
        how = "no" if not matches else "more than one"
        raise CorpusError(f"{how} prepared data set matches {name!r} (prepared: {known})")
    return matches[0]
