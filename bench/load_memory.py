"""Peak memory of loading pretrained weights, against the size of the weights.

Saves a randomly initialised GPT-2 (by default the 124M size; --size picks
another) as model.safetensors + config.json, and the same weights as a
book-format .pth state dict, then loads each in a fresh process and reports
the peak resident memory of that process minus its resident memory after
`import torch, engine` (before loading). Run from the repository root:

    python -m bench.load_memory [--size gpt2-medium] [--dir DIR]

Needs transformers (to write the Hugging Face files). Exact on Linux.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MB = 1024 * 1024
CASES = {
    "GPT-2 safetensors -> float32": ("hf", "model.safetensors", None),
    "GPT-2 safetensors -> bfloat16": ("hf", "model.safetensors", "bfloat16"),
    "book .pth (torch.load mmap)": ("book", "model.pth", None),
}


def rss_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process.

    Read from /proc because ru_maxrss survives exec on Linux: a child would
    start with its parent's peak. Elsewhere ru_maxrss (bytes on macOS) stands in for both.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(kind: str, path: str, dtype: str | None) -> dict:
    """Runs in the child process: load once, then run one forward pass."""
    import torch

    import engine  # noqa: F401  (part of the baseline, as an application would have it loaded)
    from engine.weights.book import load_book_state_dict
    from engine.weights.gpt2 import load_gpt2

    baseline = rss_bytes("VmRSS")
    if kind == "hf":
        model = load_gpt2(path, dtype=getattr(torch, dtype) if dtype else None)
    else:
        model = load_book_state_dict(path)
    after_load = rss_bytes("VmHWM")
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"baseline": baseline, "after_load": after_load, "after_forward": rss_bytes("VmHWM"),
            "weights": weight_bytes, "params": model.num_parameters()}


def write_weights(folder: Path, size: str) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine.model.config import get_preset
    from engine.weights.gpt2 import GPT2_SIZES, load_gpt2

    cfg = get_preset(GPT2_SIZES[size].preset)
    torch.manual_seed(0)
    hf_config = GPT2Config(n_embd=cfg.emb_dim, n_layer=cfg.n_layers, n_head=cfg.n_heads)
    GPT2LMHeadModel(hf_config).save_pretrained(folder, safe_serialization=True)
    torch.save(load_gpt2(folder).state_dict(), folder / "model.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="folder for the weights (default: a temporary one)")
    parser.add_argument("--size", default="gpt2", choices=("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"),
                        help="GPT-2 size to write (default: gpt2, the 124M one)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, dtype = args.child
        print(json.dumps(measure(kind, path, None if dtype == "-" else dtype)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        if not (folder / "model.pth").is_file():
            write_weights(folder, args.size)
        print(f"model.safetensors: {(folder / 'model.safetensors').stat().st_size / MB:.0f} MB, "
              f"model.pth: {(folder / 'model.pth').stat().st_size / MB:.0f} MB")
        repo_root = Path(__file__).resolve().parents[1]
        for label, (kind, filename, dtype) in CASES.items():
            target = folder if kind == "hf" else folder / filename
            command = [sys.executable, "-m", "bench.load_memory", "--child", kind, str(target), dtype or "-"]
            out = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            load, fwd = r["after_load"] - r["baseline"], r["after_forward"] - r["baseline"]
            print(f"{label}: {r['params'] / 1e6:.1f}M parameters, weights {r['weights'] / MB:.0f} MB in memory; "
                  f"baseline RSS {r['baseline'] / MB:.0f} MB; peak RSS above baseline after loading "
                  f"{load / MB:.0f} MB ({load / r['weights']:.2f}x the weights), "
                  f"after one forward pass {fwd / MB:.0f} MB ({fwd / r['weights']:.2f}x)")


if __name__ == "__main__":
    main()
