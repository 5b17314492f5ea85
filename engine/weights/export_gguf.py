"""A GPTModel as a GGUF file for llama.cpp and Ollama, with an Ollama Modelfile beside it.

llama.cpp runs GPT-2 as its "gpt2" architecture: fused query/key/value,
GELU, pre-norm blocks with biases, learned position embeddings. The tensors
are GPT-2's (engine.weights.gpt2_tensors) under the names the gguf package maps
them to, each as nn.Linear stores it, [out, in] (GGUF lists dimensions the other
way round, [in, out]). The tokenizer travels in the file as GPT-2's token
strings and merges.

Weight types (`gguf_type`), as llama.cpp's own converter chooses them:
  f32   everything in float32
  f16   matrices in float16; biases, norms and position embeddings in float32
  q8_0  matrices in 8-bit blocks of 32 along each row (a row whose length is not
        a multiple of 32 stays float16); the rest as for f16
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import ConfigError
from engine.model.gpt import GPTModel
from engine.model.tokenizer import END_OF_TEXT_ID
from engine.weights.export_hf import require_gpt2_vocabulary
from engine.weights.export_target import check_destination, writing
from engine.weights.gpt2_tensors import to_gpt2_tensors, transpose_conv1d
from engine.weights.gpt2_tokenizer_files import gpt2_vocabulary
from engine.weights.model_card import ModelCard

GGUF_TYPES = ("f32", "f16", "q8_0")
ARCHITECTURE = "gpt2"
_Q8_0_BLOCK = 32


def modelfile_path(out: Path) -> Path:
    """The Ollama Modelfile written beside `out`: model.gguf -> model.Modelfile."""
    return out.with_suffix(".Modelfile")


def check_gguf_type(gguf_type: str) -> None:
    if gguf_type not in GGUF_TYPES:
        raise ConfigError(f"unknown GGUF type {gguf_type!r}; choose one of: {', '.join(GGUF_TYPES)}")


def gguf_package():
    """The gguf package, an optional dependency (the `export` extra) needed only here."""
    try:
        import gguf
    except ImportError:
        raise ConfigError("writing GGUF needs the gguf package: pip install 'tui-gpt[export]'") from None
    return gguf


def export_gguf(model: GPTModel, out: Path, card: ModelCard, gguf_type: str = "f16", force: bool = False) -> Path:
    """Write `out` (a .gguf file) and its Ollama Modelfile; returns the GGUF's path."""
    gguf = gguf_package()
    check_gguf_type(gguf_type)
    require_gpt2_vocabulary(model)
    out = Path(out)
    modelfile = modelfile_path(out)
    check_destination(modelfile, force)  # both are checked before either is written
    with writing(out, force) as temp:
        writer = gguf.GGUFWriter(temp, ARCHITECTURE)
        _add_metadata(writer, gguf, model, card, gguf_type)
        _add_tokenizer(writer, gguf)
        _add_tensors(writer, gguf, model, gguf_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    with writing(modelfile, force) as temp:
        temp.write_text(_modelfile(out, model.cfg.context_length), encoding="utf-8")
    return out


def _add_metadata(writer, gguf, model: GPTModel, card: ModelCard, gguf_type: str) -> None:
    cfg = model.cfg
    writer.add_name(card.name)
    writer.add_description(card.summary())
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.emb_dim)
    writer.add_feed_forward_length(4 * cfg.emb_dim)
    writer.add_block_count(cfg.n_layers)
    writer.add_head_count(cfg.n_heads)
    writer.add_layer_norm_eps(1e-5)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[gguf_type])
    for key, value in card.gguf_metadata().items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, int):
            writer.add_uint64(key, value)
        else:
            writer.add_float32(key, value)


def _add_tokenizer(writer, gguf) -> None:
    vocabulary = gpt2_vocabulary()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocabulary.tokens)
    types = [gguf.TokenType.NORMAL] * END_OF_TEXT_ID + [gguf.TokenType.CONTROL]
    writer.add_token_types(types)
    writer.add_token_merges(vocabulary.merges)
    writer.add_bos_token_id(END_OF_TEXT_ID)
    writer.add_eos_token_id(END_OF_TEXT_ID)
    writer.add_add_bos_token(False)  # a base model continues the text as given


def _add_tensors(writer, gguf, model: GPTModel, gguf_type: str) -> None:
    tensors = transpose_conv1d(to_gpt2_tensors(model))
    # llama.cpp reads the output head as its own tensor: a tied model gets a copy of the
    # embedding, as llama.cpp's own converter gives it.
    tensors.setdefault("lm_head.weight", tensors["wte.weight"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, model.cfg.n_layers)
    for name, tensor in tensors.items():
        full_name = name if name == "lm_head.weight" else f"transformer.{name}"
        gguf_name = names.get_name(full_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise AssertionError(f"the gguf package has no name for GPT-2's {name}")
        data = tensor.float().contiguous().numpy()
        qtype = _weight_type(gguf, gguf_name, data, gguf_type)
        if qtype == gguf.GGMLQuantizationType.Q8_0:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype))


def _weight_type(gguf, gguf_name: str, data: np.ndarray, gguf_type: str):
    types = gguf.GGMLQuantizationType
    if gguf_type == "f32" or data.ndim < 2 or gguf_name.startswith("position_embd"):
        return types.F32
    if gguf_type == "q8_0" and data.shape[-1] % _Q8_0_BLOCK == 0:
        return types.Q8_0
    return types.F16


def _modelfile(out: Path, context_length: int) -> str:
    """Ollama's recipe: the GGUF, a plain-text template (a base model, not a chat model), sampling defaults."""
    return f"""# Ollama: ollama create NAME -f {modelfile_path(out).name}, then ollama run NAME "Every effort moves you"
FROM ./{out.name}
TEMPLATE \"\"\"{{{{ .Prompt }}}}\"\"\"
PARAMETER num_ctx {context_length}
PARAMETER temperature 0.8
PARAMETER top_k 40
PARAMETER top_p 0.95
PARAMETER repeat_penalty 1.1
PARAMETER stop "<|endoftext|>"
"""
