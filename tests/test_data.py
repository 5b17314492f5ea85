"""The book's chapter 2 data pipeline and its memory-mapped twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from engine.data.windows import GPTDatasetV1, TokenWindowDataset, create_dataloader_v1, split_train_val
from engine.model.tokenizer import END_OF_TEXT, get_tokenizer


@pytest.fixture
def verdict_ids(verdict_text) -> list[int]:
    return get_tokenizer().encode(verdict_text, allowed_special={END_OF_TEXT})


def test_verdict_has_the_books_token_count(verdict_ids):
    assert len(verdict_ids) == 5145  # "the total number of tokens ... is 5145" in chapter 2


def test_books_batch_example(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (8, 4)
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs[0].tolist() == [40, 367, 2885, 1464]
    assert targets[0].tolist() == [367, 2885, 1464, 1807]
    assert torch.equal(targets[:, :-1], inputs[:, 1:])
    # stride == max_length: consecutive windows neither overlap nor skip a token
    assert torch.equal(inputs[1:, 0], targets[:-1, -1])


def test_books_stride_one_example(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=1, max_length=4, stride=1, shuffle=False)
    batches = iter(loader)
    first, second = next(batches), next(batches)
    assert [t.tolist() for t in first] == [[[40, 367, 2885, 1464]], [[367, 2885, 1464, 1807]]]
    assert [t.tolist() for t in second] == [[[367, 2885, 1464, 1807]], [[2885, 1464, 1807, 3619]]]


def test_dataset_windows_follow_the_books_range(verdict_ids, verdict_text):
    dataset = GPTDatasetV1(verdict_text, get_tokenizer(), max_length=4, stride=4)
    assert len(dataset) == len(range(0, 5145 - 4, 4)) == 1286
    last_input, last_target = dataset[len(dataset) - 1]
    start = (len(dataset) - 1) * 4
    assert last_input.tolist() == verdict_ids[start : start + 4]
    assert last_target.tolist() == verdict_ids[start + 1 : start + 5]


def test_loader_drops_the_last_partial_batch_by_default(verdict_text):
    loader = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    assert len(loader) == 1286 // 8
    kept = create_dataloader_v1(verdict_text, batch_size=8, max_length=4, stride=4, shuffle=False, drop_last=False)
    assert len(kept) == -(-1286 // 8)


def test_text_no_longer_than_a_window_gives_no_items():
    tokenizer = get_tokenizer()
    ids = tokenizer.encode("one two three four five")
    assert len(GPTDatasetV1("one two three four five", tokenizer, max_length=len(ids), stride=1)) == 0
    assert len(GPTDatasetV1("one two three four five", tokenizer, max_length=len(ids) - 1, stride=1)) == 1


def _items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(inputs), torch.stack(targets)


@pytest.mark.parametrize("max_length, stride", [(4, 4), (4, 1), (256, 128), (256, 256), (5144, 1), (5145, 1)])
def test_token_windows_equal_the_books_dataset(verdict_text, verdict_ids, tmp_path, max_length, stride):
    book = GPTDatasetV1(verdict_text, get_tokenizer(), max_length, stride)
    path = tmp_path / "tokens.bin"
    np.array(verdict_ids, dtype=np.uint16).tofile(path)
    sources = {
        "memmap": np.memmap(path, dtype=np.uint16, mode="r"),
        "numpy": np.array(verdict_ids, dtype=np.int32),
        "tensor": torch.tensor(verdict_ids),
    }
    for source in sources.values():
        windows = TokenWindowDataset(source, max_length, stride)
        assert len(windows) == len(book)
        if len(book):
            expected, got = _items(book), _items(windows)
            assert got[0].dtype == got[1].dtype == torch.long
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_token_windows_reject_indexes_past_the_end(verdict_ids):
    windows = TokenWindowDataset(np.array(verdict_ids, dtype=np.uint16), max_length=4, stride=4)
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_shuffled_loaders_draw_the_same_batches_and_rng(verdict_text, verdict_ids):
    book = GPTDatasetV1(verdict_text, get_tokenizer(), max_length=8, stride=8)
    windows = TokenWindowDataset(np.array(verdict_ids, dtype=np.uint16), max_length=8, stride=8)

    def run(dataset) -> tuple[list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(123)
        batches = [x for x, _ in DataLoader(dataset, batch_size=4, shuffle=True, drop_last=True)]
        return batches, torch.get_rng_state()

    (book_batches, book_rng), (window_batches, window_rng) = run(book), run(windows)
    assert all(torch.equal(a, b) for a, b in zip(book_batches, window_batches))
    assert len(book_batches) == len(window_batches) > 0
    assert torch.equal(book_rng, window_rng)


def test_split_is_the_books_character_split(verdict_text):
    train, val = split_train_val(verdict_text)
    assert len(verdict_text) == 20479
    assert len(train) == int(0.9 * 20479) == 18431
    assert train + val == verdict_text
    train, val = split_train_val("abcdefghij", train_ratio=0.75)
    assert (train, val) == ("abcdefg", "hij")


def test_the_verdict_in_the_repository_is_the_books_text(verdict_path):
    import hashlib

    # tests/data/NOTICE.md records this checksum; every test that trains on the book's text reads this copy.
    assert hashlib.sha256(verdict_path.read_bytes()).hexdigest() == (
        "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f"
    )
