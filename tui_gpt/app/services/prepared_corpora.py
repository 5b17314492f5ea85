"""The data sets already prepared in the data dir's cache, as corpora the training form offers.

`--corpus` names a source, not a prepared data set: a run on the source a data
set was prepared from finds that data set in the cache and starts at once. So
each offer is that source (recorded as `spec` in the data set's source.json),
one per source, and only where the trainer can still open it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreparedCorpus:
    label: str  # what the form's choice shows
    source: str  # what goes in the corpus field: the path or hf:NAME it was prepared from


def prepared_corpora(cache_dir: Path) -> list[PreparedCorpus]:
    """The offers, in the cache's order (slow-ish: reads every data set's meta; call it off the UI thread)."""
    from engine.data.prepare import list_prepared

    offers: dict[str, PreparedCorpus] = {}
    for entry in list_prepared(cache_dir):
        source = entry.description.get("spec")
        if not isinstance(source, str) or source in offers:
            continue
        if not source.startswith("hf:") and not Path(source).exists():
            continue  # the source is gone: a run on it would fail
        name = entry.description.get("name") or Path(source).name
        if entry.meta is None:
            size = "partly prepared"
        else:
            size = f"{entry.meta.get('train_tokens', 0) + entry.meta.get('val_tokens', 0):,} tokens"
        offers[source] = PreparedCorpus(f"{name} · {size}", source)
    return list(offers.values())
