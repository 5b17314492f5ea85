"""Data sources, recognised by name and content: `open_source("data.jsonl.zst")`.

One module per kind: text, jsonl, parquet, token_files (nanoGPT .bin, llm.c
shards), huggingface (`hf:NAME` or a saved dataset), folder (shards of any of
the document kinds), with compression (gzip, zstd, xz) under them all. `FORMATS`
are the names `--corpus-format` accepts; "auto" recognises the kind.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.data.sources.base import DocumentSource, TokenSource
from engine.data.sources.compression import SUFFIXES, compression_of, strip_suffix
from engine.errors import CorpusError

FORMATS = ("auto", "text", "jsonl", "parquet", "tokens", "hf")
_EXTENSIONS = {".txt": "text", ".md": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet",
               ".bin": "tokens"}


def open_source(spec: str | os.PathLike, fmt: str = "auto", text_field: str = "text") -> DocumentSource | TokenSource:
    """The source `spec` names: a file, a folder, `hf:NAME[:CONFIG][:SPLIT]` or a saved dataset folder."""
    from engine.data.sources import huggingface

    if fmt not in FORMATS:
        raise CorpusError(f"unknown corpus format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    given = str(spec)
    if given.startswith(huggingface.HF_PREFIX):
        return huggingface.open_hub_dataset(given, text_field)
    path = Path(spec).expanduser().absolute()
    if not path.exists():
        raise CorpusError(f"corpus not found: {given}")
    if path.is_dir():
        if fmt in ("auto", "hf") and huggingface.is_saved_dataset(path):
            return huggingface.open_saved_dataset(path, text_field)
        return _open_folder(path, fmt, text_field)
    if not path.is_file():
        raise CorpusError(f"corpus is neither a regular file nor a folder: {given}")
    kind = fmt if fmt != "auto" else format_of(path)
    if kind == "tokens":
        from engine.data.sources.token_files import token_source

        return token_source([path], path.name, None)
    return _document_file(path, kind, text_field)


def format_of(path: Path) -> str:
    """The format of a file from its name (under any compression suffix), else from its first bytes."""
    kind = _EXTENSIONS.get(Path(strip_suffix(path.name)).suffix.lower())
    if kind:
        return kind
    try:
        with path.open("rb") as file:
            head = file.read(4)
        if compression_of(path):
            from engine.data.sources.compression import open_stream

            with path.open("rb") as raw:
                head = open_stream(path, raw).read(4)
    except OSError as error:
        raise CorpusError(f"cannot read {path}: {error.strerror or error}") from None
    if head == b"PAR1":
        return "parquet"
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    return "text"


def _document_file(path: Path, kind: str, text_field: str, in_folder: bool = False) -> DocumentSource:
    if kind == "text":
        from engine.data.sources.text import TextFile

        return TextFile(path, skip_unusable=in_folder)
    if kind == "jsonl":
        from engine.data.sources.jsonl import JsonLinesFile

        return JsonLinesFile(path, text_field)
    if kind == "parquet":
        from engine.data.sources.parquet import ParquetFile

        return ParquetFile(path, text_field)
    raise CorpusError(f"{path}: format {kind!r} is not a file format; use it for a folder or leave it out")


def _open_folder(folder: Path, fmt: str, text_field: str) -> DocumentSource | TokenSource:
    files = _files_of(folder)
    kinds = {path: (fmt if fmt != "auto" else _EXTENSIONS.get(Path(strip_suffix(path.name)).suffix.lower()))
             for path in files}
    known = [path for path in files if kinds[path]]
    if not known:
        raise CorpusError(f"no corpus files in {folder} (known: {', '.join(sorted(_EXTENSIONS))}, "
                          f"optionally {', '.join(SUFFIXES)})")
    if any(kinds[path] == "tokens" for path in known):
        others = [path.name for path in known if kinds[path] != "tokens"]
        if others:
            raise CorpusError(f"{folder} mixes token files with documents ({others[0]}); give one kind per folder")
        from engine.data.sources.token_files import token_source

        return token_source(known, folder.name, folder)
    from engine.data.sources.folder import DocumentFolder

    return DocumentFolder(folder, [_document_file(path, kinds[path], text_field, in_folder=True) for path in known])


def _files_of(folder: Path) -> list[Path]:
    """Regular, non-hidden files under folder, in relative-path order (a stable shard order)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root, name) for name in names if not name.startswith(".") and Path(root, name).is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


__all__ = ["FORMATS", "DocumentSource", "TokenSource", "format_of", "open_source"]
