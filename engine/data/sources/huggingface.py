"""Hugging Face `datasets` datasets, read offline: `hf:NAME[:CONFIG][:SPLIT]` or a `save_to_disk` folder.

Nothing is downloaded: a dataset must already be in the local cache (or saved to
disk), because training machines are often offline and a silent multi-gigabyte
download is not what `--corpus` should start. Without SPLIT the "train" split
trains and a "validation" (or "val") split, when there is one, validates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from engine.errors import CorpusError

HF_PREFIX = "hf:"
VALIDATION_SPLITS = ("validation", "val")
_BATCH_ROWS = 1000


def is_saved_dataset(folder: Path) -> bool:
    """Whether folder is what `Dataset.save_to_disk` or `DatasetDict.save_to_disk` wrote."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # read when datasets is first imported
    try:
        import datasets
    except ImportError:
        raise CorpusError("Hugging Face datasets need the datasets package (pip install 'tui-gpt[datasets]')") from None
    datasets.config.HF_DATASETS_OFFLINE = True  # in case it was imported before
    datasets.disable_progress_bars()
    return datasets


class HuggingFaceDataset:
    """One split of a dataset; `validation` is the dataset's own validation split, if any."""

    kind = "hf"

    def __init__(self, dataset, name: str, text_field: str, validation: "HuggingFaceDataset | None" = None):
        if text_field not in dataset.column_names:
            raise CorpusError(f"dataset {name} has no column {text_field!r} (columns: {', '.join(dataset.column_names)}); "
                              "choose one with --text-field")
        self.dataset, self.name, self.text_field, self.validation = dataset, name, text_field, validation
        self.size_bytes = int(dataset.data.nbytes)
        self.rows_done = 0

    def fingerprint(self) -> str:
        return f"{self.dataset._fingerprint}-{self.text_field}"  # datasets' own content fingerprint

    def bytes_read(self) -> int:
        return self.size_bytes * self.rows_done // max(1, len(self.dataset))

    def documents(self) -> Iterator[str]:
        self.rows_done = 0
        for batch in self.dataset.select_columns([self.text_field]).iter(batch_size=_BATCH_ROWS):
            texts = batch[self.text_field]
            for text in texts:
                if isinstance(text, str) and text.strip():
                    yield text
            self.rows_done += len(texts)

    def warnings(self) -> list[str]:
        return []


def open_hub_dataset(spec: str, text_field: str) -> HuggingFaceDataset:
    """`hf:NAME[:CONFIG][:SPLIT]` from the local cache."""
    parts = spec[len(HF_PREFIX):].split(":")
    if not parts[0] or len(parts) > 3:
        raise CorpusError(f"{spec}: write a Hugging Face dataset as hf:NAME[:CONFIG][:SPLIT]")
    name, config, split = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None), (parts[2] if len(parts) > 2 else None)
    datasets = _datasets()
    looked_for = f"dataset {name}" + (f" (config {config})" if config else "") + (f" split {split}" if split else "")
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # offline misses surface as several exception types across versions
        raise CorpusError(
            f"{looked_for} is not in the local Hugging Face cache ({datasets.config.HF_DATASETS_CACHE}): "
            f"download it first where there is a network, e.g. datasets.load_dataset({name!r}"
            f"{', ' + repr(config) if config else ''}) ({type(error).__name__})"
        ) from None
    return _from_loaded(loaded, spec, text_field)


def open_saved_dataset(folder: Path, text_field: str) -> HuggingFaceDataset:
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as error:
        raise CorpusError(f"{folder} is not a readable saved dataset ({type(error).__name__}: {error})") from None
    return _from_loaded(loaded, folder.name, text_field)


def _from_loaded(loaded, name: str, text_field: str) -> HuggingFaceDataset:
    if not hasattr(loaded, "keys"):  # a single Dataset
        return HuggingFaceDataset(loaded, name, text_field)
    if "train" not in loaded:
        raise CorpusError(f"dataset {name} has no 'train' split (splits: {', '.join(loaded)}); name one as hf:NAME:CONFIG:SPLIT")
    validation = next((s for s in VALIDATION_SPLITS if s in loaded), None)
    val = HuggingFaceDataset(loaded[validation], f"{name}:{validation}", text_field) if validation else None
    return HuggingFaceDataset(loaded["train"], f"{name}:train", text_field, validation=val)
