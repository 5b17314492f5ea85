"""`python -m bench.verify_gguf`: does llama.cpp run tui-gpt's GGUF exports as the engine does?

Trains a tiny model for 60 steps on the book's short story (or takes
`--model SPEC`), exports it as GGUF in f32, f16 and q8_0, runs each through
llama.cpp (the llama-cpp-python package), and compares with the engine:

- the tokenizer: llama.cpp's tokens for a few texts against the engine's;
- the logits of the prompt's last position (largest absolute difference);
- greedy decoding from the same prompt tokens: how many of the first N new
  tokens agree position by position, and where they first differ.

f32 must agree on every token; f16 and q8_0 are reported as counts. The tiny
model's width is a multiple of 32, which q8_0's blocks need along each row.
Needs `pip install llama-cpp-python` (built from source: several minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.model.config import GPTConfig
from engine.model.generation import generate
from engine.model.gpt import GPTModel
from engine.model.tokenizer import get_tokenizer
from engine.weights.export import ExportRequest
from engine.weights.model_card import card_for_model

STORY = Path(__file__).resolve().parent.parent / "tests" / "data" / "the-verdict.txt"
TINY = GPTConfig(context_length=128, emb_dim=64, n_heads=2, n_layers=2, drop_rate=0.0)
PROMPT = "Every effort moves you"
TEXTS = ["Every effort moves you", "I HAD always thought Jack Gisburn rather a cheap genius",
         "  two  spaces\n\nnew lines\ttabs", "héllo wörld, naïve café 日本語 🎉👩‍👩‍👧", "It's 3.14159, isn't it?"]


def train_tiny(steps: int, seed: int = 123) -> GPTModel:
    """AdamW steps on the-verdict.txt, 4 windows each: peaked predictions, unlike random weights."""
    torch.manual_seed(seed)
    model = GPTModel(TINY)
    if steps == 0:  # random weights: flat predictions, but a varied continuation
        return model.eval()
    ids = torch.tensor(get_tokenizer().encode(STORY.read_text(encoding="utf-8")))
    windows = ids[: (len(ids) - 1) // TINY.context_length * TINY.context_length + 1]
    inputs = windows[:-1].view(-1, TINY.context_length)
    targets = windows[1:].view(-1, TINY.context_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    model.train()
    for step in range(steps):
        batch = torch.randint(0, len(inputs), (4,))
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]).flatten(0, 1), targets[batch].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained {steps} steps on {STORY.name}: last batch loss {loss.item():.3f}", file=sys.stderr)
    return model.eval()


def llama_greedy(llm, prompt: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy continuation, and its logits after the prompt.

    Needs `logits_all=True`: without it llama-cpp-python 0.3.36 left `scores` at zero here.
    """
    llm.reset()
    llm.eval(prompt)
    first_logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    out = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out, first_logits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify_gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", metavar="SPEC", help="a model to export instead of the tiny trained one")
    parser.add_argument("--steps", type=int, default=60, help="training steps of the tiny model (default 60; 0: random weights)")
    parser.add_argument("--tokens", type=int, default=64, help="greedy tokens to compare (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    args = parser.parse_args(argv)
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python", file=sys.stderr)
        return 2

    if args.model:
        from engine.weights.resolver import resolve_model

        resolved = resolve_model(args.model)
        model, description = resolved.model, resolved.description
    else:
        model, description = train_tiny(args.steps), f"tiny model trained {args.steps} steps"
    cfg = model.cfg
    encoding = get_tokenizer()
    prompt = encoding.encode(PROMPT)
    n = min(args.tokens, cfg.context_length - len(prompt))
    with torch.no_grad():
        idx = torch.tensor([prompt])
        ours = generate(model, idx, n, cfg.context_length)[0, len(prompt):].tolist()
        our_logits = model(idx)[0, -1].numpy()

    print(f"model: {description} ({cfg.n_layers} layers x {cfg.emb_dim}, context {cfg.context_length}); "
          f"prompt {PROMPT!r}, {n} greedy tokens\n")
    print("| GGUF type | file size | tokenizer texts equal | max abs logit diff (prompt) | greedy tokens equal "
          "| first difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    all_f32_equal = True
    with tempfile.TemporaryDirectory() as folder:
        for gguf_type in ("f32", "f16", "q8_0"):
            out = Path(folder) / f"tiny-{gguf_type}.gguf"
            ExportRequest("gguf", out, gguf_type).write(model, card_for_model(cfg, "verify-gguf", description))
            start = time.perf_counter()
            llm = Llama(model_path=str(out), n_ctx=cfg.context_length, n_batch=cfg.context_length,
                        n_threads=args.threads, logits_all=True, verbose=False, seed=0)
            texts_equal = sum(llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
                              == encoding.encode(t, allowed_special="all") for t in TEXTS)
            theirs, their_logits = llama_greedy(llm, prompt, n)
            equal = sum(a == b for a, b in zip(ours, theirs))
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
            diff = float(np.abs(their_logits[: cfg.vocab_size] - our_logits).max())
            print(f"| {gguf_type} | {out.stat().st_size / 2**20:.1f} MiB | {texts_equal}/{len(TEXTS)} | {diff:.2e} | "
                  f"{equal}/{n} | {'-' if first is None else f'token {first}'} |")
            if gguf_type == "f32":
                all_f32_equal = equal == n and texts_equal == len(TEXTS)
                print(f"<!-- engine:    {encoding.decode(ours)!r} -->\n<!-- llama.cpp: {encoding.decode(theirs)!r} "
                      f"({time.perf_counter() - start:.1f} s) -->")
            llm.close()
    return 0 if all_f32_equal else 1


if __name__ == "__main__":
    sys.exit(main())
