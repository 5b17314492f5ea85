"""llm.c's model files (`gpt2_124M.bin`, `gpt2_124M_bf16.bin`) as a GPTModel.

The layout, as llm.c's train_gpt2.py writes it (write_model) and train_gpt2.c reads it:
a header of 256 little-endian int32 (magic 20240326, version, max_seq_len,
vocab_size, num_layers, num_heads, channels, padded_vocab_size, then zeros),
followed by the parameters with no gaps, tensor by tensor, each layer's tensors
stacked: wte (Vp, C), wpe (T, C), ln1w (L, C), ln1b (L, C), qkvw (L, 3C, C),
qkvb (L, 3C), attprojw (L, C, C), attprojb (L, C), ln2w, ln2b (L, C),
fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C), fcprojb (L, C), lnfw (C), lnfb (C).
Version 3 stores float32, version 5 bfloat16 (widened to float32 here). The
output head is the token embedding (tied), and the rows of the padded
vocabulary past vocab_size are cropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.errors import CheckpointError, ConfigError
from engine.model.config import GPTConfig
from engine.model.gpt import GPTModel
from engine.weights.gpt2_tensors import from_gpt2_tensors, transpose_conv1d

MAGIC = 20240326
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VERSIONS = {3: "float32", 5: "bfloat16"}


def _layout(V: int, T: int, L: int, C: int) -> list[tuple[str, tuple[int, ...]]]:
    """llm.c's tensors in file order, with their shapes; per-layer ones named with {i}."""
    return [("wte.weight", (V, C)), ("wpe.weight", (T, C)),
            ("h.{i}.ln_1.weight", (L, C)), ("h.{i}.ln_1.bias", (L, C)),
            ("h.{i}.attn.c_attn.weight", (L, 3 * C, C)), ("h.{i}.attn.c_attn.bias", (L, 3 * C)),
            ("h.{i}.attn.c_proj.weight", (L, C, C)), ("h.{i}.attn.c_proj.bias", (L, C)),
            ("h.{i}.ln_2.weight", (L, C)), ("h.{i}.ln_2.bias", (L, C)),
            ("h.{i}.mlp.c_fc.weight", (L, 4 * C, C)), ("h.{i}.mlp.c_fc.bias", (L, 4 * C)),
            ("h.{i}.mlp.c_proj.weight", (L, C, 4 * C)), ("h.{i}.mlp.c_proj.bias", (L, C)),
            ("ln_f.weight", (C,)), ("ln_f.bias", (C,))]


def load_llmc(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPTModel, str]:
    """A GPTModel (eval mode) and a one-line description of what was loaded."""
    path = Path(path).expanduser()
    try:
        size = path.stat().st_size
        header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(header) < HEADER_INTS or header[0] != MAGIC:
        raise CheckpointError(f"{path} is not an llm.c model file (no magic number {MAGIC} in its header)")
    version = int(header[1])
    if version not in VERSIONS:
        raise CheckpointError(f"{path} is an llm.c model file of version {version}; tui-gpt reads versions "
                              f"{' and '.join(f'{v} ({d})' for v, d in VERSIONS.items())}")
    T, V, L, NH, C, Vp = (int(x) for x in header[2:8])
    if not 0 < V <= Vp:
        raise CheckpointError(f"{path}: the header's vocab_size {V} and padded vocab size {Vp} do not fit together")
    try:
        cfg = GPTConfig(vocab_size=V, context_length=T, emb_dim=C, n_heads=NH, n_layers=L, drop_rate=0.0,
                        qkv_bias=True, tie_embeddings=True)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the header describes no valid model: {exc}") from None
    layout = _layout(Vp, T, L, C)
    itemsize = 4 if VERSIONS[version] == "float32" else 2
    expected = HEADER_BYTES + sum(int(np.prod(shape)) for _, shape in layout) * itemsize
    if size != expected:
        raise CheckpointError(f"{path} is {size:,} bytes; a version-{version} llm.c model of this shape "
                              f"({L} layers, {C} wide, vocabulary {Vp:,}) is {expected:,} bytes: truncated or damaged")
    # Copy-on-write map: nothing is read until used, and float32 weights are used in place.
    raw = np.memmap(path, dtype="<f4" if itemsize == 4 else "<i2", mode="c", offset=HEADER_BYTES)
    flat = torch.from_numpy(raw)
    if itemsize == 2:
        flat = flat.view(torch.bfloat16)
    tensors, offset = {}, 0
    for name, shape in layout:
        count = int(np.prod(shape))
        stacked = flat[offset:offset + count].view(shape)
        offset += count
        if "{i}" in name:
            tensors |= {name.format(i=i): stacked[i] for i in range(L)}
        else:
            tensors[name] = stacked
    tensors["wte.weight"] = tensors["wte.weight"][:V]
    tensors = {name: t.float() for name, t in tensors.items()}  # no copy for float32
    model = from_gpt2_tensors(cfg, transpose_conv1d(tensors), path, device)
    cropped = f"; vocabulary cropped from llm.c's padded {Vp:,} to {V:,}" if Vp != V else ""
    return model, (f"llm.c model {path} (version {version}, {VERSIONS[version]}; "
                   f"{model.num_parameters() / 1e6:.0f}M parameters{cropped})")
