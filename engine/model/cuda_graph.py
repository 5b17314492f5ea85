"""One decoding step recorded as a CUDA graph and replayed for every new token.

At batch 1 a GPU reads a 124M model's weights for one token in tens of
microseconds, but the step is a couple of hundred small kernels, each launched
from Python: on an H200 plain decoding ran at 246–291 tokens/s, 3% of the
memory bandwidth. A CUDA graph records the launches once and replays them as
one: 414 tokens/s with fp32 weights, 987 with the bf16 decoding copy
(BENCHMARKS.md). It needs every shape and address fixed, hence a StaticKVCache,
the next token written into one input tensor, and the logits read from one
output tensor.
"""

from __future__ import annotations

import torch

from engine.model.gpt import GPTModel, StaticKVCache

# Steps run before capturing (on a side stream, as capturing requires): the first
# call of each kernel initialises libraries and picks algorithms, which a graph cannot record.
_WARMUP_STEPS = 2


def graph_decoding_possible(model: GPTModel) -> bool:
    """Whether `GraphedStep` can run this model: on a CUDA GPU, in eval mode (no dropout to
    record), outside autocast (its cached casts would be freed under the graph), and outside a
    torchrun process group (FSDP gathers weights with collectives, which no graph should hold)."""
    return (model.tok_emb.weight.device.type == "cuda" and not model.training
            and not torch.is_autocast_enabled("cuda")
            and not (torch.distributed.is_available() and torch.distributed.is_initialized()))


def room_to_capture(cache: StaticKVCache) -> bool:
    """Whether the cache has the free positions that capturing writes into (and gives back)."""
    return cache.length + _WARMUP_STEPS < cache.capacity


class GraphedStep:
    """`model(next_ids, kv_cache=cache, last_only=True)[:, -1, :]` for one token per sequence,
    replayed from a graph. Capturing runs steps that write into the cache's free positions; the
    cache is rewound afterwards, and the real steps overwrite those positions before any query
    can see them."""

    @torch.no_grad()
    def __init__(self, model: GPTModel, cache: StaticKVCache):
        self.cache = cache
        device = model.tok_emb.weight.device
        self.token = torch.zeros(cache.batch_size, 1, dtype=torch.long, device=device)
        start = cache.length
        try:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(_WARMUP_STEPS):
                    model(self.token, kv_cache=cache, last_only=True)
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = model(self.token, kv_cache=cache, last_only=True)[:, -1, :]
        finally:
            cache.rewind(start)

    def __call__(self, next_ids: torch.Tensor) -> torch.Tensor:
        self.token.copy_(next_ids)
        self.graph.replay()
        self.cache.length += 1  # on the host; the graph advanced the cache's device-side position
        return self.logits.clone()  # the next replay overwrites the graph's own output
