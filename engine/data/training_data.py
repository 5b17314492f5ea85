"""The train and validation tokens of a run, from whatever `--corpus` names.

One entry point for the trainer and `tui-gpt data prepare`:
- the demo corpus and a single text file keep the book's path (a 90/10 character
  split, token_cache.py), so the book's run is unchanged;
- token files (nanoGPT .bin, llm.c shards) are used as they are, with their own
  validation file when there is one, else the last tokens;
- every other source is a stream of documents, prepared once into shards (prepare.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.data.corpus import refuse_empty_corpus_path
from engine.data.sources import TokenSource, format_of, open_source
from engine.data.token_array import as_token_array


@dataclass(frozen=True)
class TrainingData:
    name: str
    path: Path | None  # None: the demo corpus or a Hugging Face dataset name
    fingerprint: str
    train: object  # 1-D token arrays (np.memmap or ConcatenatedTokens)
    val: object
    cache_path: Path | None  # None: token files used in place
    warnings: list[str] = field(default_factory=list)


def load_training_data(corpus: str | None, cache_dir: Path, *, corpus_format: str = "auto", text_field: str = "text",
                       val_corpus: str | None = None, train_ratio: float = 0.9, seed: int = 0,
                       workers: int | None = None, on_progress: Callable | None = None) -> TrainingData:
    """The tokens to train and validate on, tokenizing into the cache first if needed."""
    for given in (corpus, val_corpus):
        if given is not None:
            refuse_empty_corpus_path(str(given))
    if _is_book_text(corpus, corpus_format, val_corpus):
        return _book_text(corpus, cache_dir, train_ratio)
    source = open_source(corpus, corpus_format, text_field)
    val_source = open_source(val_corpus, corpus_format, text_field) if val_corpus else None
    path = None if str(corpus).startswith("hf:") else Path(corpus).expanduser().absolute()
    if isinstance(source, TokenSource):
        return _token_data(source, val_source, path, train_ratio)
    if isinstance(val_source, TokenSource):
        from engine.errors import CorpusError

        raise CorpusError(f"--val-corpus {val_corpus} holds tokens but {corpus} holds documents; give the same kind")
    from engine.data.prepare import prepare

    prepared = prepare(source, cache_dir, val_source=val_source or getattr(source, "validation", None),
                       val_fraction=1.0 - train_ratio, seed=seed, workers=workers, on_progress=on_progress, spec=str(path or corpus))
    fingerprint = prepared.folder.name  # names the source and how it was split
    return TrainingData(source.name, path, fingerprint, prepared.train, prepared.val, prepared.folder,
                        list(prepared.meta["warnings"]))


def _is_book_text(corpus: str | None, corpus_format: str, val_corpus: str | None) -> bool:
    if corpus is None or corpus == "demo":
        return True
    if val_corpus or str(corpus).startswith("hf:"):
        return False
    path = Path(corpus).expanduser()
    return path.is_file() and (corpus_format == "text" or (corpus_format == "auto" and format_of(path) == "text"))


def _book_text(corpus: str | None, cache_dir: Path, train_ratio: float) -> TrainingData:
    from engine.data.corpus import load_corpus
    from engine.data.token_cache import load_token_splits

    text = load_corpus(corpus)
    splits = load_token_splits(text, cache_dir, train_ratio)
    return TrainingData(text.name, text.path, text.fingerprint, splits.train, splits.val, splits.cache_path,
                        text.warnings())


def _token_data(source: TokenSource, val_source, path: Path | None, train_ratio: float) -> TrainingData:
    train, val = list(source.train), list(source.val)
    if val_source is not None:
        val = list(val_source.train) + list(val_source.val)
    elif not val:  # no validation file: the last tokens validate, as the book's split does
        whole = as_token_array(train)
        cut = int(train_ratio * len(whole))
        train, val = [whole[:cut]], [whole[cut:]]
    fingerprint = source.fingerprint if val_source is None else f"{source.fingerprint}+{val_source.fingerprint}"
    return TrainingData(source.name, path, fingerprint, as_token_array(train), as_token_array(val), None)
