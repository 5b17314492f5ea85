"""Training text: a file, a folder of text files, or the built-in demo corpus.

`load_corpus` checks the text once (binary files, empty files, invalid UTF-8)
and fingerprints it, so that tokenized copies can be cached by content.

Memory: a corpus whose files total at most `IN_MEMORY_LIMIT_BYTES` is held as
one str. A bigger one is not: `Corpus.iter_chunks()` streams it from its files
again (and `Corpus.text` joins it, which needs the memory it was spared).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from engine.errors import CorpusError
from engine.model.tokenizer import END_OF_TEXT

DEMO_NAME = "demo (Python docs)"
DEFAULT_EXTENSIONS = (".txt", ".md")
DOCUMENT_SEPARATOR = END_OF_TEXT  # GPT-2 marks where one document ends and the next begins
IN_MEMORY_LIMIT_BYTES = 64 * 2**20
# Changing how text is read or joined changes the tokens, so it must change the fingerprint.
FINGERPRINT_VERSION = "tui-gpt-corpus-1"

_READ_BYTES = 2**20
_BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SkippedFile:
    """A file of a folder corpus that was left out, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class _FileStamp:
    """Enough of a file's stat to notice that it changed after it was read."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "_FileStamp | None":
        """The stamp, or None if the file cannot be stat'ed (then reading it reports why)."""
        try:
            stat = path.stat()
        except OSError:
            return None
        return cls(stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Corpus:
    """Checked training text: its documents joined by `<|endoftext|>`."""

    name: str
    path: Path | None  # None: the demo corpus
    fingerprint: str  # sha256 of FINGERPRINT_VERSION and the joined text
    n_chars: int  # length of `text`
    files: list[Path] = field(default_factory=list)
    replaced: dict[Path, int] = field(default_factory=dict)  # file -> invalid UTF-8 bytes turned into U+FFFD
    skipped_files: list[SkippedFile] = field(default_factory=list)
    _text: str | None = field(default=None, repr=False)  # None: too big to hold, streamed from `files`
    _stamps: dict[Path, _FileStamp | None] = field(default_factory=dict, repr=False)

    @property
    def replaced_bytes(self) -> int:
        return sum(self.replaced.values())

    @property
    def text(self) -> str:
        """The whole text; for a corpus over IN_MEMORY_LIMIT_BYTES this reads it all into memory."""
        return self._text if self._text is not None else "".join(self.iter_chunks())

    def iter_chunks(self) -> Iterator[str]:
        """The text in pieces that concatenate to `text`, without holding more than one file block."""
        if self._text is not None:
            yield self._text
            return
        for index, path in enumerate(self.files):
            if _FileStamp.of(path) != self._stamps[path]:
                raise CorpusError(f"{path} changed after the corpus was loaded; load it again")
            if index:
                yield DOCUMENT_SEPARATOR
            try:
                for text, _ in _decode_blocks(path):
                    yield text
            except UnusableText as unusable:
                raise CorpusError(f"cannot use {path}: {unusable}") from None

    def warnings(self) -> list[str]:
        """One line per thing the user should know about: replaced bytes, skipped files."""
        lines = [f"{n} invalid UTF-8 byte(s) in {path} were replaced with U+FFFD" for path, n in self.replaced.items()]
        lines += [f"skipped {skipped.path}: {skipped.reason}" for skipped in self.skipped_files]
        return lines


def refuse_empty_corpus_path(given: str) -> None:
    """An empty --corpus is a mistake, never "the current folder" (which Path("") would be)."""
    if not given.strip():
        raise CorpusError("the corpus path is empty; name a file or folder, or leave the option out for the demo corpus")


def load_corpus(path: str | os.PathLike | None, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> Corpus:
    """Load a text file, a folder of text files (recursively), or the demo corpus (None or "demo").

    A file or folder that is itself called demo is reached as "./demo" or as a Path.
    """
    if path is None or (isinstance(path, str) and path == "demo"):
        return _demo_corpus()
    given = str(path)
    refuse_empty_corpus_path(given)
    target = Path(path).expanduser().absolute()
    if not target.exists():
        raise CorpusError(f"corpus not found: {given}")
    if target.is_dir():
        return _load_folder(target, extensions)
    if target.is_file():
        return _load_file(target)
    raise CorpusError(f"corpus is neither a regular file nor a folder: {given}")


def require_tokens(n_tokens: int, context_length: int, what: str = "training", corpus: str | None = None) -> None:
    """Fail unless a split holds at least one (input, target) window of `context_length` tokens."""
    need = context_length + 1
    if n_tokens < need:
        source = f" of {corpus}" if corpus else ""
        raise CorpusError(
            f"corpus too short: {n_tokens} tokens in the {what} split{source}, need at least {need} (context_length + 1)"
        )


def _demo_corpus() -> Corpus:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise CorpusError("the demo corpus needs Python's pydoc_data module, which this Python lacks; give a corpus path") from None
    text = DOCUMENT_SEPARATOR.join(filter(None, (demo_prose(topics[key]) for key in sorted(topics))))
    hasher = _new_hasher()
    hasher.update(text.encode("utf-8"))
    return Corpus(name=DEMO_NAME, path=None, fingerprint=hasher.hexdigest(), n_chars=len(text), _text=text)


def demo_prose(topic: str) -> str:
    """The prose paragraphs of a pydoc topic, each on one line with single spaces.

    The topics are mostly indented code, grammar and tables; a small model trained on
    them for minutes learns the indentation first and samples only spaces and newlines.
    Paragraphs that start at the margin are prose; their line breaks are layout.
    """
    paragraphs = []
    for paragraph in topic.split("\n\n"):
        if not paragraph.strip() or paragraph[:1].isspace():
            continue  # indented: an example, a grammar rule or a table
        words = paragraph.split()
        letters = sum(ch.isalpha() for ch in paragraph)
        if len(words) >= 8 and letters >= 0.6 * len("".join(words)) and not set("*=+|") & set(paragraph[:2]):
            paragraphs.append(" ".join(words))
    return "\n".join(paragraphs)


def _load_file(path: Path) -> Corpus:
    hasher = _new_hasher()
    keep_text = _file_size(path) <= IN_MEMORY_LIMIT_BYTES
    try:
        document = _read_document(path, hasher, keep_text)
    except UnusableText as unusable:
        raise CorpusError(f"cannot use {path}: {unusable}") from None
    return Corpus(
        name=path.name,
        path=path,
        fingerprint=hasher.hexdigest(),
        n_chars=document.n_chars,
        files=[path],
        replaced={path: document.replaced_bytes} if document.replaced_bytes else {},
        _text=document.text,
        _stamps={path: document.stamp},
    )


def _load_folder(folder: Path, extensions: tuple[str, ...]) -> Corpus:
    candidates = _find_text_files(folder, extensions)
    if not candidates:
        raise CorpusError(f"no {' or '.join(_normalized(extensions))} files in {folder}")
    keep_text = sum(_file_size(p) for p in candidates) <= IN_MEMORY_LIMIT_BYTES
    hasher = _new_hasher()
    documents: dict[Path, _Document] = {}
    skipped: list[SkippedFile] = []
    for path in candidates:
        # A file found unusable part-way through has already been hashed; roll the hash back.
        before = hasher.copy()
        if documents:
            hasher.update(DOCUMENT_SEPARATOR.encode("utf-8"))
        try:
            documents[path] = _read_document(path, hasher, keep_text)
        except UnusableText as unusable:
            hasher = before
            skipped.append(SkippedFile(path, str(unusable)))
    if not documents:
        raise CorpusError(
            f"no usable text in {folder}: all {len(candidates)} file(s) were skipped (first: {skipped[0].reason})"
        )
    n_separators = len(documents) - 1
    return Corpus(
        name=folder.name,
        path=folder,
        fingerprint=hasher.hexdigest(),
        n_chars=sum(d.n_chars for d in documents.values()) + n_separators * len(DOCUMENT_SEPARATOR),
        files=list(documents),
        replaced={p: d.replaced_bytes for p, d in documents.items() if d.replaced_bytes},
        skipped_files=skipped,
        _text=DOCUMENT_SEPARATOR.join(d.text for d in documents.values()) if keep_text else None,
        _stamps={p: d.stamp for p, d in documents.items()},
    )


def _find_text_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Regular, non-hidden files under folder with one of the extensions, in relative-path order."""
    suffixes = tuple(ext.lower() for ext in _normalized(extensions))
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = Path(root, name)
            if not name.startswith(".") and name.lower().endswith(suffixes) and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _file_size(path: Path) -> int:
    stamp = _FileStamp.of(path)
    return stamp.size if stamp else 0


def _normalized(extensions: tuple[str, ...]) -> list[str]:
    return [ext if ext.startswith(".") else f".{ext}" for ext in extensions]


def _new_hasher() -> "hashlib._Hash":
    hasher = hashlib.sha256()
    hasher.update(FINGERPRINT_VERSION.encode("utf-8") + b"\n")
    return hasher


class UnusableText(Exception):
    """A file that holds no usable text; the message says why."""


@dataclass(frozen=True)
class _Document:
    text: str | None  # None when the corpus is too big to hold
    n_chars: int
    replaced_bytes: int
    stamp: _FileStamp | None


def _read_document(path: Path, hasher: "hashlib._Hash", keep_text: bool) -> _Document:
    """Decode one file, feeding its text to hasher; fail if it is binary, unreadable or blank."""
    stamp = _FileStamp.of(path)
    parts: list[str] = []
    n_chars = replaced_bytes = 0
    has_text = False
    for text, replaced in _decode_blocks(path):
        hasher.update(text.encode("utf-8"))
        n_chars += len(text)
        replaced_bytes += replaced
        has_text = has_text or (bool(text) and not text.isspace())
        if keep_text:
            parts.append(text)
    if not has_text:
        raise UnusableText("the file is empty" if n_chars == 0 else "the file holds only whitespace")
    return _Document("".join(parts) if keep_text else None, n_chars, replaced_bytes, stamp)


# Decoding counts the bytes it replaces through a codec error handler; the count lives
# in a thread-local that is reset and read around each decode call.
_REPLACE_AND_COUNT = "tui_gpt.replace_and_count"
_replacements = threading.local()


def _replace_and_count(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _replacements.bytes += error.end - error.start
    return "\ufffd", error.end


codecs.register_error(_REPLACE_AND_COUNT, _replace_and_count)


def _decode_blocks(path: Path) -> Iterator[tuple[str, int]]:
    """(text, invalid bytes replaced) per block of a file; see `decode_utf8_blocks`."""
    try:
        with path.open("rb") as file:
            yield from decode_utf8_blocks(file)
    except OSError as error:
        raise UnusableText(f"it cannot be read ({error.strerror or error})") from None


def decode_utf8_blocks(file: BinaryIO) -> Iterator[tuple[str, int]]:
    """(text, invalid bytes replaced) per block, as `bytes.decode("utf-8", errors="replace")` without a BOM.

    Raises UnusableText if the first block holds NUL bytes (a binary file).
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors=_REPLACE_AND_COUNT)
    first = True
    while True:
        block = file.read(_READ_BYTES)
        if first and b"\0" in block[:_BINARY_SNIFF_BYTES]:
            raise UnusableText("it looks like a binary file (it contains NUL bytes), not UTF-8 text")
        first = False
        _replacements.bytes = 0
        text = decoder.decode(block, final=not block)
        yield text, _replacements.bytes
        if not block:
            return
