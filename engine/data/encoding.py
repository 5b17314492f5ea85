"""GPT-2 ids of many documents at once, on worker processes.

tiktoken lets go of the GIL while it encodes, yet on a 2-core CPU two threads
encoded the same 64 MB of documents only 1.35 times as fast as one, and two
processes 1.7 times (measured alone; the whole preparation: BENCHMARKS.md,
`tokenize`).
So a large source is encoded by `workers` processes, each given whole slices
of a batch and answering with one uint16 array and the documents' lengths
(two pickled arrays, not a Python int per token). A small source is encoded
in this process: starting the workers would take longer than the work.

Workers are spawned, never forked: the parent may hold torch's threads, and a
fork copies their locks in whatever state they are. A worker imports only the
tokenizer (no torch), ignores the signals its parent handles (Ctrl-C reaches
the whole process group, and the parent decides what a stop means), and ends
when the parent closes the pool or dies. Spawning imports the parent's main
module again, as for any spawned process: a script that prepares data needs its
`if __name__ == "__main__":` guard (the `tui-gpt` command has it). Should the
workers fail to start or die (a script without the guard, the OOM killer), the
batch and the rest are encoded in this process: slower, never lost.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from engine.data.token_array import TOKEN_DTYPE
from engine.model.tokenizer import get_tokenizer

# Below this many bytes of source, spawning workers costs more than it saves.
PROCESSES_FROM_BYTES = 32 * 2**20
SLICES_PER_WORKER = 2  # so that a worker finishing early takes another slice


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The documents' ids, one after the other, and each document's number of ids.

    `encode_to_numpy` with no special tokens allowed or refused is `encode_ordinary`
    (an "<|endoftext|>" written in a document is text).
    """
    tokenizer = get_tokenizer()
    arrays = [tokenizer.encode_to_numpy(text, disallowed_special=()) for text in texts]
    lengths = np.fromiter((len(ids) for ids in arrays), dtype=np.int64, count=len(arrays))
    ids = np.concatenate(arrays).astype(TOKEN_DTYPE) if arrays else np.zeros(0, dtype=TOKEN_DTYPE)
    return ids, lengths


class BatchEncoder:
    """Encodes batches of documents: `submit` one, then `result` gives each document's ids, in order.

    Between the two the caller is free to read the next batch; with workers, it is
    encoded meanwhile.
    """

    def __init__(self, workers: int, source_bytes: int):
        self.slices = max(1, workers) * SLICES_PER_WORKER
        self.pool = None
        if workers > 1 and source_bytes >= PROCESSES_FROM_BYTES:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_follow_the_parent)

    def submit(self, texts: list[str]) -> tuple[list[str], list]:
        if self.pool is None:
            return texts, [encode_texts(texts)]
        step = -(-len(texts) // self.slices)
        return texts, [self.pool.submit(encode_texts, texts[start:start + step]) for start in range(0, len(texts), step)]

    def result(self, pending: tuple[list[str], list]) -> list[np.ndarray]:
        texts, parts = pending
        try:
            encoded = [part.result() if isinstance(part, Future) else part for part in parts]
        except BrokenProcessPool:
            self.close()
            self.pool = None
            encoded = [encode_texts(texts)]
        documents: list[np.ndarray] = []
        for ids, lengths in encoded:
            documents += np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return documents

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _follow_the_parent() -> None:
    """In each worker: leave stop signals to the parent, and end when it is gone (even by kill -9)."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is adopted by another process
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
