"""The book's chapter 2 data pipeline: sliding windows of token ids as (input, target) pairs.

`GPTDatasetV1` and `create_dataloader_v1` are the book's, over text.
`TokenWindowDataset` gives the same windows over an already tokenized (and
possibly memory-mapped) array, slicing each on demand instead of holding them all.
"""

from __future__ import annotations

import numpy as np
import tiktoken
import torch
from torch.utils.data import DataLoader, Dataset

from engine.model.tokenizer import END_OF_TEXT, get_tokenizer


def _window_starts(n_tokens: int, max_length: int, stride: int) -> range:
    # The book's range: a window is kept only if its shifted target fits too.
    return range(0, n_tokens - max_length, stride)


class GPTDatasetV1(Dataset):
    """Every `stride`-th window of `max_length` tokens of txt, paired with the window one token later."""

    def __init__(self, txt: str, tokenizer: tiktoken.Encoding, max_length: int, stride: int):
        token_ids = tokenizer.encode(txt, allowed_special={END_OF_TEXT})
        self.input_ids: list[torch.Tensor] = []
        self.target_ids: list[torch.Tensor] = []
        for start in _window_starts(len(token_ids), max_length, stride):
            self.input_ids.append(torch.tensor(token_ids[start : start + max_length]))
            self.target_ids.append(torch.tensor(token_ids[start + 1 : start + max_length + 1]))

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(
    txt: str,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    dataset = GPTDatasetV1(txt, get_tokenizer(), max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


class TokenWindowDataset(Dataset):
    """GPTDatasetV1's windows over a 1-D token array (numpy, np.memmap or tensor), sliced per item."""

    def __init__(self, tokens: np.ndarray | torch.Tensor, max_length: int, stride: int):
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().cpu().numpy()
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
        self.tokens = tokens
        self.max_length = max_length
        self.starts = _window_starts(len(tokens), max_length, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.starts[idx]  # IndexError past the end, as a list would
        window = torch.from_numpy(self.tokens[start : start + self.max_length + 1].astype(np.int64))
        return window[:-1], window[1:]


def split_train_val(text: str, train_ratio: float = 0.9) -> tuple[str, str]:
    """The book's split: the first train_ratio of the characters train, the rest validate."""
    split_idx = int(train_ratio * len(text))
    return text[:split_idx], text[split_idx:]
