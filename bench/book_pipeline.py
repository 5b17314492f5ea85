"""The book's chapter 5 run as its own process: `python -m bench.book_pipeline CONFIG CORPUS EPOCHS OUT`.

The book's pipeline, step by step as chapter 5 runs it: the whole text encoded
and cut into windows (`create_dataloader_v1`, 90% of the characters train), the
book's model (bench.textbook), `torch.optim.AdamW` with lr 4e-4 and weight
decay 0.1 and torch's defaults otherwise, `train_model_simple` with
eval_freq=5, eval_iter=5, a 50-token greedy sample of "Every effort moves you"
after each epoch, and at the end `torch.save` of the model's and the
optimizer's state dicts, as the book saves them. Seeds are the book's (123
before the loaders, 123 before the model).

It prints the book's lines, then one JSON line: every evaluation, the wall time
(time.time()) at which training began and the run ended, and the seconds spent
in steps, evaluations, samples and saving, for bench.book_run's breakdown.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from engine.model.config import GPTConfig
from engine.model.tokenizer import get_tokenizer

from .textbook import TextbookGPT, textbook_generate_text_simple

EVAL_FREQ, EVAL_ITER = 5, 5
START_CONTEXT = "Every effort moves you"
SAMPLE_TOKENS = 50


class Phases:
    """Seconds spent in each named phase."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timed(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


class BookWindows(Dataset):
    """The book's GPTDatasetV1: input and target windows of the encoded text, made up front."""

    def __init__(self, text: str, tokenizer, max_length: int, stride: int):
        ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
        self.inputs = [torch.tensor(ids[i : i + max_length]) for i in range(0, len(ids) - max_length, stride)]
        self.targets = [torch.tensor(ids[i + 1 : i + max_length + 1]) for i in range(0, len(ids) - max_length, stride)]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index]


def create_dataloader_v1(text: str, batch_size: int, max_length: int, stride: int, shuffle: bool,
                         drop_last: bool) -> DataLoader:
    dataset = BookWindows(text, get_tokenizer(), max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=0)


def calc_loss_batch(inputs, targets, model, device):
    logits = model(inputs.to(device))
    return F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten())


def calc_loss_loader(loader, model, device, num_batches=None) -> float:
    if len(loader) == 0:
        return float("nan")
    num_batches = len(loader) if num_batches is None else min(num_batches, len(loader))
    total = 0.0
    for index, (inputs, targets) in enumerate(loader):
        if index >= num_batches:
            break
        total += calc_loss_batch(inputs, targets, model, device).item()
    return total / num_batches


def evaluate_model(model, train_loader, val_loader, device, eval_iter):
    model.eval()
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
        val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train()
    return train_loss, val_loss


def generate_and_print_sample(model, tokenizer, device, start_context: str) -> None:
    model.eval()
    context_size = model.pos_emb.weight.shape[0]
    encoded = torch.tensor(tokenizer.encode(start_context)).unsqueeze(0).to(device)
    with torch.no_grad():
        ids = textbook_generate_text_simple(model, encoded, SAMPLE_TOKENS, context_size)
    print(tokenizer.decode(ids.squeeze(0).tolist()).replace("\n", " "))
    model.train()


def train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter,
                       start_context, tokenizer, phases: Phases):
    """The book's loop; `phases` adds up where its time goes (a batch's loading counts as its step)."""
    evaluations = []
    global_step = -1
    for epoch in range(num_epochs):
        model.train()
        batches = iter(train_loader)
        while True:
            with phases.timed("steps"):
                batch = next(batches, None)
                if batch is None:
                    break
                inputs, targets = batch
                optimizer.zero_grad()
                loss = calc_loss_batch(inputs, targets, model, device)
                loss.backward()
                optimizer.step()
                global_step += 1
            if global_step % eval_freq == 0:
                with phases.timed("evaluations"):
                    train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                evaluations.append((global_step, train_loss, val_loss))
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        with phases.timed("samples"):
            generate_and_print_sample(model, tokenizer, device, start_context)
    return evaluations


def main(config_json: str, corpus: str, epochs: int, out: str, device_name: str = "cpu") -> None:
    cfg = GPTConfig.from_dict(json.loads(config_json))
    device = torch.device(device_name)
    text = Path(corpus).read_text(encoding="utf-8")
    split = int(0.90 * len(text))
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(text[:split], batch_size=2, max_length=cfg.context_length,
                                        stride=cfg.context_length, shuffle=True, drop_last=True)
    val_loader = create_dataloader_v1(text[split:], batch_size=2, max_length=cfg.context_length,
                                      stride=cfg.context_length, shuffle=False, drop_last=False)
    torch.manual_seed(123)
    model = TextbookGPT(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    phases = Phases()
    training_started = time.time()
    evaluations = train_model_simple(model, train_loader, val_loader, optimizer, device, epochs, EVAL_FREQ,
                                     EVAL_ITER, START_CONTEXT, get_tokenizer(), phases)
    with phases.timed("checkpoint"):
        torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
                   Path(out) / "model_and_optimizer.pth")
    print(json.dumps({"evaluations": evaluations, "training_started": training_started, "ended": time.time(),
                      "phases": phases.seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], *sys.argv[5:6])
