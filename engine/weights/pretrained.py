"""Pretrained weights into GPTModel: OpenAI's GPT-2 in the Hugging Face layout, and the book's .pth files.

Where GPT-2 comes from, in order: a folder or file the user names, the local
Hugging Face cache, then a download through huggingface_hub (engine.weights.hf_cache).

Memory: a model is built on the meta device (no random weights are
allocated) and then filled with load_state_dict(assign=True). Safetensors are
read one tensor at a time with plain reads rather than through a memory map,
because pages read through a map count as the process's memory until the
file is closed, which would double the peak. Book .pth files are memory-mapped
by torch.load and used in place. Either way the peak is about one copy.

Nothing here executes code from a file: safetensors hold only tensors, and
torch.load runs with weights_only=True.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from safetensors import SafetensorError, safe_open

from engine.weights import hf_cache
from engine.model.config import PRESETS, GPTConfig, as_config, get_preset
from engine.errors import CheckpointError, ConfigError
from engine.model.gpt import GPTModel, _is_book_mask, meta_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE)
FRESH_PREFIX = "fresh:"
TUI_GPT_MODEL_CONFIG = "model.json"  # beside a tui-gpt checkpoint's model.safetensors


@dataclass(frozen=True)
class Gpt2Size:
    name: str  # the name OpenAI released it under, also its legacy hub id
    params: str
    repo_id: str
    preset: str  # the engine.model.config preset with the same architecture
    download: str

    @property
    def description(self) -> str:
        cfg = get_preset(self.preset)
        return (f"GPT-2 {self.params}: {cfg.n_layers} layers, {cfg.emb_dim} wide, "
                f"{cfg.n_heads} heads, {self.download} download")


GPT2_SIZES: dict[str, Gpt2Size] = {size.name: size for size in (
    Gpt2Size("gpt2", "124M", "openai-community/gpt2", "gpt2-small", "0.5 GB"),
    Gpt2Size("gpt2-medium", "355M", "openai-community/gpt2-medium", "gpt2-medium", "1.5 GB"),
    Gpt2Size("gpt2-large", "774M", "openai-community/gpt2-large", "gpt2-large", "3.3 GB"),
    Gpt2Size("gpt2-xl", "1558M", "openai-community/gpt2-xl", "gpt2-xl", "6.4 GB"),
)}

# Every way a user may name a size: "gpt2-medium", "355M", the hub id, and the
# book's labels ("gpt2-medium (355M)", whose small one is "gpt2-small").
_ALIASES = {
    alias.lower(): size
    for size in GPT2_SIZES.values()
    for alias in (size.name, size.params, size.repo_id, size.preset, f"{size.preset} ({size.params})")
}

# Shapes do not reveal how a width is split into heads; GPT-2's own sizes are known.
HEADS_BY_WIDTH = {get_preset(s.preset).emb_dim: get_preset(s.preset).n_heads for s in GPT2_SIZES.values()}

_TANH_GELUS = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast"}
_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal masks some exports carry; not weights
_FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def gpt2_size(name: str) -> Gpt2Size | None:
    """The GPT-2 size `name` means, or None."""
    return _ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class Gpt2Files:
    config_path: Path | None  # None: a bare weights file; the config is read off the tensor shapes
    weights_path: Path
    source: str  # where the files were found, for the user


def resolve_gpt2_files(name_or_path: str | Path, *, download: bool = True, tqdm_class: Any = None) -> Gpt2Files:
    """Find GPT-2 files: a path the user names, else the hub cache, else a download.

    Raises CheckpointError listing every place tried and how to provide the files.
    `tqdm_class` draws the download's progress bar (default: tqdm on stderr).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _local_files(path)
    size = gpt2_size(str(name_or_path))
    if size is None:
        raise CheckpointError(
            f"{str(name_or_path)!r} is neither an existing file or folder nor a GPT-2 name "
            f"({', '.join(GPT2_SIZES)} or {', '.join(s.params for s in GPT2_SIZES.values())})"
        )
    tried = []
    for repo_id in (size.repo_id, size.name):
        snapshot = hf_cache.cached_snapshot(repo_id, _HUB_FILES)
        if snapshot is not None:
            return Gpt2Files(snapshot / CONFIG_FILE, snapshot / WEIGHTS_FILE, f"the Hugging Face cache ({snapshot})")
        tried.append(f"not in the Hugging Face cache at {hf_cache.repo_folder(repo_id)}")
    if download:
        try:
            snapshot = hf_cache.download(size.repo_id, _HUB_FILES, tqdm_class)
        except hf_cache.HubUnavailable as exc:
            tried.append(str(exc))
        else:
            return Gpt2Files(snapshot / CONFIG_FILE, snapshot / WEIGHTS_FILE,
                             f"a download of {size.repo_id} (now cached in {snapshot})")
    raise CheckpointError(
        f"GPT-2 {size.params} ({size.name}) is not available: {'; '.join(tried)}. "
        f"Fetch it with `hf download {size.repo_id} {' '.join(_HUB_FILES)}` (pip install huggingface_hub), "
        f"or pass a folder that holds {CONFIG_FILE} and {WEIGHTS_FILE}"
    )


def available_gpt2_models() -> list[str]:
    """GPT-2 sizes already in the local hub cache; never touches the network."""
    return [size.name for size in GPT2_SIZES.values()
            if any(hf_cache.cached_snapshot(r, _HUB_FILES) for r in (size.repo_id, size.name))]


def load_gpt2(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
              drop_rate: float = 0.0, *, download: bool = True, tqdm_class: Any = None) -> GPTModel:
    """GPT-2 weights as a GPTModel in eval mode (context 1024, qkv_bias, tied output head).

    `dtype` converts the weights (None keeps the file's); `drop_rate` is for finetuning.
    """
    files = resolve_gpt2_files(name_or_path, download=download, tqdm_class=tqdm_class)
    return _load_hf(files, device, dtype, drop_rate)


def load_book_state_dict(path: str | Path, cfg: GPTConfig | Mapping[str, Any] | None = None,
                         device: str | torch.device = "cpu") -> GPTModel:
    """A state_dict saved from the book's GPTModel (.pth/.pt, or .safetensors with the book's names).

    Without `cfg` the config is read off the tensor shapes; the number of heads
    only for GPT-2's widths (768, 1024, 1280, 1600). The model is in eval mode.
    """
    path = Path(path).expanduser()
    state = {k: v for k, v in _read_book_state(path).items() if not _is_book_mask(k)}
    config = _as_checkpoint_config(cfg, path) if cfg is not None else _config_from_book_shapes(state, path)
    expected = {k: tuple(v.shape) for k, v in meta_model(config).state_dict().items()}
    if config.tie_embeddings:
        expected.pop("out_head.weight")
        head = state.pop("out_head.weight", None)
        if head is not None and not _same_tensor(head, state.get("tok_emb.weight")):
            raise CheckpointError(f"{path} holds an output head of its own, but the config ties it to tok_emb")
    _check_shapes(expected, {k: tuple(v.shape) for k, v in state.items()}, path, "the model config")
    return _assemble(config, state, device)


def load_any_model(spec: str, device: str | torch.device = "cpu") -> tuple[GPTModel, str]:
    """What `--model NAME|PATH` means, and a one-line description of what was loaded.

    In order: a Hugging Face folder (config.json + model.safetensors); another
    folder, or a .safetensors file with a model.json beside it, taken as a
    tui-gpt checkpoint; a .safetensors file (GPT-2's names or the book's); a
    nanoGPT ckpt.pt (engine.weights.nanogpt); an llm.c .bin (engine.weights.llmc);
    a .pth/.pt file of the book; a GPT-2 name or size; a preset name, optionally
    written "fresh:NAME", for an untrained model.
    """
    from engine.weights import llmc, nanogpt  # imported here: they import this module

    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
            return _gpt2_with_description(_local_files(path), device)
        return _tui_gpt_checkpoint(path, device)
    if path.is_file():
        if path.suffix == ".safetensors" and path.with_name(TUI_GPT_MODEL_CONFIG).is_file():
            return _tui_gpt_checkpoint(path, device)
        if path.suffix == ".safetensors" and "tok_emb.weight" not in _safetensors_names(path):
            return _gpt2_with_description(_local_files(path), device)
        if path.suffix in (".pt", ".pth") and nanogpt.is_nanogpt_checkpoint(path):
            return nanogpt.load_nanogpt(path, device)
        if path.suffix == ".bin":
            return llmc.load_llmc(path, device)
        if path.suffix in (".safetensors", ".pth", ".pt"):
            model = load_book_state_dict(path, device=device)
            return model, f"book-format state dict {path} ({_millions(model)} parameters)"
        raise CheckpointError(f"{path}: cannot load a {path.suffix or 'suffix-less'} file; "
                              "use .safetensors, .pth or .pt, an llm.c .bin, or a folder")
    if gpt2_size(spec) is not None:
        return _gpt2_with_description(resolve_gpt2_files(spec), device)
    preset = spec.strip().removeprefix(FRESH_PREFIX)
    if preset in PRESETS:
        model = GPTModel(PRESETS[preset]).to(device).eval()
        return model, f"untrained {preset} ({_millions(model)} parameters, random weights)"
    raise CheckpointError(
        f"{spec!r} is not an existing file or folder, a GPT-2 name ({', '.join(GPT2_SIZES)}) "
        f"or a preset ({', '.join(PRESETS)})"
    )


# --- GPT-2 in the Hugging Face layout ----------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """One tensor of the Hugging Face file and where it goes in GPTModel."""

    name: str  # without the optional `transformer.` prefix
    shape: tuple[int, ...]
    targets: tuple[str, ...]  # three for the fused query/key/value of c_attn
    conv1d: bool = False  # GPT-2's Conv1D stores [in, out]; nn.Linear keeps [out, in]


def _hf_plan(cfg: GPTConfig) -> list[_Source]:
    e = cfg.emb_dim

    def norm(hf: str, book: str) -> list[_Source]:
        return [_Source(f"{hf}.weight", (e,), (f"{book}.scale",)), _Source(f"{hf}.bias", (e,), (f"{book}.shift",))]

    def conv1d(hf: str, n_in: int, n_out: int, *books: str) -> list[_Source]:
        return [_Source(f"{hf}.weight", (n_in, n_out), tuple(f"{b}.weight" for b in books), conv1d=True),
                _Source(f"{hf}.bias", (n_out,), tuple(f"{b}.bias" for b in books))]

    plan = [_Source("wte.weight", (cfg.vocab_size, e), ("tok_emb.weight",)),
            _Source("wpe.weight", (cfg.context_length, e), ("pos_emb.weight",))]
    for i in range(cfg.n_layers):
        h, att, ff = f"h.{i}", f"trf_blocks.{i}.att", f"trf_blocks.{i}.ff.layers"
        plan += norm(f"{h}.ln_1", f"trf_blocks.{i}.norm1")
        plan += conv1d(f"{h}.attn.c_attn", e, 3 * e, f"{att}.W_query", f"{att}.W_key", f"{att}.W_value")
        plan += conv1d(f"{h}.attn.c_proj", e, e, f"{att}.out_proj")
        plan += norm(f"{h}.ln_2", f"trf_blocks.{i}.norm2")
        plan += conv1d(f"{h}.mlp.c_fc", e, 4 * e, f"{ff}.0")
        plan += conv1d(f"{h}.mlp.c_proj", 4 * e, e, f"{ff}.2")
    plan += norm("ln_f", "final_norm")
    if not cfg.tie_embeddings:
        plan.append(_Source("lm_head.weight", (cfg.vocab_size, e), ("out_head.weight",)))
    return plan


def _read_converted(f: Any, name: str, source: _Source, device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """GPTModel's tensors from one file tensor: split, transposed and contiguous, each in its own storage.

    The targets are allocated before the file tensor is read, so that the read
    buffer, freed right after, lies above them in the heap and is reused rather
    than left as a hole (that saved 9% of the weights' size in peak memory).
    """
    if len(source.targets) == 1 and not source.conv1d:
        return {source.targets[0]: f.get_tensor(name).to(device=device, dtype=dtype)}
    shape = (*source.shape[:-1], source.shape[-1] // len(source.targets))
    targets = {t: torch.empty(shape[::-1] if source.conv1d else shape, dtype=dtype, device=device)
               for t in source.targets}
    for target, part in zip(targets.values(), f.get_tensor(name).chunk(len(targets), dim=-1)):
        target.copy_(part.t() if source.conv1d else part)
    return targets


def _load_hf(files: Gpt2Files, device, dtype, drop_rate: float) -> GPTModel:
    path = files.weights_path
    with _reading_safetensors(path) as f:
        # Exports from GPT2LMHeadModel prefix the body's names with `transformer.`.
        names = {n.removeprefix("transformer."): n for n in f.keys()}
        shapes = {n: tuple(f.get_slice(full).get_shape()) for n, full in names.items()}
        if "wte.weight" not in shapes:
            raise CheckpointError(f"{path} holds no wte.weight: not GPT-2 weights in the Hugging Face layout")
        if files.config_path is not None:
            cfg = _config_from_hf_json(files.config_path, drop_rate)
        else:
            cfg = _config_from_shapes(path, shapes["wte.weight"], shapes.get("wpe.weight"),
                                      _layer_count(shapes, "h."), drop_rate=drop_rate, qkv_bias=True,
                                      tie_embeddings="lm_head.weight" not in shapes)
        plan = _hf_plan(cfg)
        ignored = {n for n in shapes if n.endswith(_HF_BUFFERS) or (n == "lm_head.weight" and cfg.tie_embeddings)}
        actual = {n: s for n, s in shapes.items() if n not in ignored}
        _check_shapes({s.name: s.shape for s in plan}, actual, path, files.config_path or "the GPT-2 layout")
        state: dict[str, torch.Tensor] = {}
        for source in plan:  # one file tensor at a time: the peak is the model plus one tensor
            stored = f.get_slice(names[source.name]).get_dtype()
            if stored not in _FLOAT_DTYPES:
                raise CheckpointError(f"{path}: {source.name} is stored as {stored}, not as floating point")
            state.update(_read_converted(f, names[source.name], source, device, dtype or _FLOAT_DTYPES[stored]))
    return _assemble(cfg, state, device)


def _config_from_hf_json(path: Path, drop_rate: float) -> GPTConfig:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    if data.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{path} describes a {data['model_type']!r} model; only GPT-2 ('gpt2') can be imported")
    # Variants GPTModel does not implement would load without error and compute the wrong thing.
    unsupported = []
    if data.get("activation_function", "gelu_new") not in _TANH_GELUS:
        unsupported.append(f"activation_function={data['activation_function']!r}")
    if data.get("layer_norm_epsilon", 1e-5) != 1e-5:
        unsupported.append(f"layer_norm_epsilon={data['layer_norm_epsilon']!r}")
    if data.get("scale_attn_by_inverse_layer_idx", False) or not data.get("scale_attn_weights", True):
        unsupported.append("non-standard attention scaling")
    if unsupported:
        raise CheckpointError(f"{path}: GPTModel does not implement {', '.join(unsupported)}")

    def field(*keys: str) -> Any:
        for key in keys:
            if key in data:
                return data[key]
        raise CheckpointError(f"{path} lacks {keys[0]!r}")

    values = dict(vocab_size=field("vocab_size", "n_vocab"), context_length=field("n_positions", "n_ctx"),
                  emb_dim=field("n_embd"), n_heads=field("n_head"), n_layers=field("n_layer"),
                  tie_embeddings=bool(data.get("tie_word_embeddings", True)))
    return _as_checkpoint_config(dict(values, drop_rate=drop_rate, qkv_bias=True), path)


# --- the book's state dicts --------------------------------------------------------------


def _read_book_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        with _reading_safetensors(path) as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        # mmap keeps the weights in the file's pages; only torch.save's zip format can be mapped.
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled Python objects, not just tensors; "
                              "refused to load it, since unpickling them could run code") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated, or not saved by torch.save): "
                              f"{_first_line(exc)}") from None
    if isinstance(loaded, Mapping) and "model_state_dict" in loaded:
        loaded = loaded["model_state_dict"]  # the book's model_and_optimizer.pth
    if not (isinstance(loaded, Mapping) and loaded
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())):
        raise CheckpointError(f"{path} does not hold a model state_dict (a dict of named tensors)")
    return dict(loaded)


def _config_from_book_shapes(state: Mapping[str, torch.Tensor], path: Path) -> GPTConfig:
    if "tok_emb.weight" not in state:
        raise CheckpointError(f"{path} holds no tok_emb.weight: not a state_dict of the book's GPTModel")
    # Saved from a tied model, the head is the embedding's storage. The book's
    # GPT-2 loader copies the embedding into the head instead: untied, as the book trains it.
    out = state.get("out_head.weight")
    tied = out is None or out.data_ptr() == state["tok_emb.weight"].data_ptr()
    pos = state.get("pos_emb.weight")
    return _config_from_shapes(path, tuple(state["tok_emb.weight"].shape), None if pos is None else tuple(pos.shape),
                               _layer_count(state, "trf_blocks."), drop_rate=0.0,
                               qkv_bias="trf_blocks.0.att.W_query.bias" in state, tie_embeddings=tied)


# --- shared ------------------------------------------------------------------------------


def _config_from_shapes(path: Path, emb_shape: tuple[int, ...], pos_shape: tuple[int, ...] | None,
                        n_layers: int, **flags: Any) -> GPTConfig:
    """A config read off the embedding shapes and the number of blocks."""
    if len(emb_shape) != 2 or pos_shape is None or len(pos_shape) != 2:
        raise CheckpointError(f"{path}: the token or position embedding is missing or not a matrix")
    vocab_size, emb_dim = emb_shape
    n_heads = HEADS_BY_WIDTH.get(emb_dim)
    if n_heads is None:
        raise CheckpointError(
            f"{path}: the number of attention heads of a {emb_dim}-wide model cannot be read off its weights "
            f"(known for GPT-2's widths {', '.join(map(str, HEADS_BY_WIDTH))}); pass its config"
        )
    return _as_checkpoint_config(dict(vocab_size=vocab_size, context_length=pos_shape[0], emb_dim=emb_dim,
                                      n_heads=n_heads, n_layers=n_layers, **flags), path)


def _same_tensor(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    return b is not None and a.shape == b.shape and (a.data_ptr() == b.data_ptr() or torch.equal(a, b))


def _as_checkpoint_config(cfg: GPTConfig | Mapping[str, Any], path: Path) -> GPTConfig:
    try:
        return as_config(cfg)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _layer_count(names: Iterable[str], prefix: str) -> int:
    indices = {name[len(prefix):].split(".", 1)[0] for name in names if name.startswith(prefix)}
    return len({i for i in indices if i.isdigit()})


def _check_shapes(expected: Mapping[str, tuple], actual: Mapping[str, tuple], path: Path, against: Any) -> None:
    """CheckpointError naming the first few missing, unexpected or misshapen tensors."""
    problems = [f"{n} has shape {list(actual[n])}, expected {list(s)}"
                for n, s in expected.items() if n in actual and actual[n] != s]
    problems += [f"{n} missing" for n in expected if n not in actual]
    problems += [f"unexpected {n}" for n in actual if n not in expected]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(f"{path} does not match {against}: {'; '.join(problems[:4])}{more}")


def _assemble(cfg: GPTConfig, state: dict[str, torch.Tensor], device) -> GPTModel:
    """A GPTModel that takes over `state`'s tensors, with no random weights allocated first."""
    model = meta_model(cfg)
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()


@contextmanager
def _reading_safetensors(path: Path) -> Iterator[Any]:
    """safe_open reading with pread (see the module docstring); its errors become CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"no such file: {path}")
    try:
        try:
            handle = safe_open(str(path), framework="pt", backend="pread")
        except TypeError:  # safetensors < 0.8 reads only through a memory map
            handle = safe_open(str(path), framework="pt")
        with handle as f:
            yield f
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt?): "
                              f"{_first_line(exc)}") from None


def _safetensors_names(path: Path) -> list[str]:
    with _reading_safetensors(path) as f:
        return list(f.keys())


def _local_files(path: Path) -> Gpt2Files:
    """A folder holding the hub's files, or a .safetensors file with an optional config.json beside it."""
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path} holds no {WEIGHTS_FILE} (a GPT-2 folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{path}: GPT-2 weights must be a .safetensors file or a folder holding {WEIGHTS_FILE}")
    config = weights.parent / CONFIG_FILE
    return Gpt2Files(config if config.is_file() else None, weights, str(path))


def _tui_gpt_checkpoint(path: Path, device) -> tuple[GPTModel, str]:
    from engine.weights.checkpoint import load_model  # imported here: checkpoints are a separate concern

    model, notes = load_model(path, device=device)
    return model, "; ".join([f"tui-gpt checkpoint {path} ({_millions(model)} parameters)", *notes])


def _gpt2_with_description(files: Gpt2Files, device) -> tuple[GPTModel, str]:
    model = _load_hf(files, device, None, 0.0)
    return model, f"GPT-2 weights ({_millions(model)} parameters) from {files.source}"


def _millions(model: GPTModel) -> str:
    return f"{model.num_parameters() / 1e6:.0f}M"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
