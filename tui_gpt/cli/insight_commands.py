"""`tui-gpt score`, `lens`, `attention` and `compare`: engine.insight without the app.

Models are chosen as for `generate` (`--run-name NAME [--best] | --checkpoint PATH |
--model SPEC`) and loaded by the same function. Like the rest of the CLI, nothing
heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# How many tokens `compare` lists as most improved and most worsened, unless told.
DEFAULT_LISTED = 10


def add_parsers(subparsers, common: argparse.ArgumentParser) -> None:
    """The four commands, added to the `tui-gpt` parser's subcommands."""
    score = subparsers.add_parser("score", parents=[common], help="how likely a model finds a text, token by token",
                                  description="Score a text: mean loss, perplexity and bits per byte; "
                                              "with --json every token's probability, rank and alternatives.")
    score.set_defaults(handler=score_command)
    score.add_argument("source", metavar="FILE|-", help="the text to score ('-': stdin)")
    _model_options(score)
    _stride_option(score)
    score.add_argument("--top-k", metavar="K", type=int, default=5, help="alternatives per token in --json (default 5)")
    score.add_argument("--json", action="store_true", help="print JSON with every token")

    lens = subparsers.add_parser("lens", parents=[common], help="the logit lens: the prediction after every layer",
                                 description="The top next tokens read out of the residual stream after each layer, "
                                             "at one position of the text.")
    lens.set_defaults(handler=lens_command)
    lens.add_argument("text", metavar="TEXT|FILE", help="the text, a file holding it, or '-' for stdin")
    lens.add_argument("--position", metavar="N", type=int, default=-1,
                      help="the token (0-based; negative counts from the end) whose next token is predicted "
                           "(default -1: the last)")
    lens.add_argument("--top-k", metavar="K", type=int, default=5, help="tokens per layer (default 5)")
    lens.add_argument("--json", action="store_true", help="print JSON for scripts")
    _model_options(lens)

    attention = subparsers.add_parser("attention", parents=[common], help="per-head attention summary of a text",
                                      description="For every layer and head: the entropy of its attention and "
                                                  "where it mostly looks (previous, first or same token).")
    attention.set_defaults(handler=attention_command)
    attention.add_argument("text", metavar="TEXT|FILE", help="the text, a file holding it, or '-' for stdin")
    attention.add_argument("--json", action="store_true", help="print JSON (with --weights, the full maps too)")
    attention.add_argument("--weights", action="store_true", help="with --json: every head's weights")
    _model_options(attention)

    compare = subparsers.add_parser(
        "compare", parents=[common], help="compare two models on a text, token by token",
        description="Score the text with models A and B: the totals of each and the tokens B predicts much "
                    "better or worse than A. A and B are each a checkpoint or model path, a run name "
                    "(its latest checkpoint; NAME@best for its best), a GPT-2 name or a preset.")
    compare.set_defaults(handler=compare_command)
    compare.add_argument("model_a", metavar="A")
    compare.add_argument("model_b", metavar="B")
    compare.add_argument("source", metavar="FILE|-", help="the text ('-': stdin)")
    _stride_option(compare)
    compare.add_argument("--top", metavar="N", type=int, default=DEFAULT_LISTED,
                         help=f"tokens listed as most improved and most worsened (default {DEFAULT_LISTED})")
    compare.add_argument("--seed", metavar="N", type=int, help="seed for a fresh preset's weights")
    compare.add_argument("--device", metavar="{auto,cpu,cuda,mps}", default="auto", help="default auto")
    compare.add_argument("--json", action="store_true", help="print JSON with every token's difference")


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-name", dest="run_name", metavar="NAME", help="a training run (its latest checkpoint)")
    source.add_argument("--checkpoint", metavar="PATH", type=Path, help="a checkpoint folder")
    source.add_argument("--model", metavar="NAME|PATH",
                        help="a preset (fresh weights), gpt2, gpt2-medium, ..., a Hugging Face folder, "
                             "or a .safetensors/.pth file")
    group.add_argument("--best", action="store_true", help="with --run-name: the checkpoint with the best val loss")
    group.add_argument("--seed", metavar="N", type=int, help="seed for a fresh preset's weights")
    group.add_argument("--device", metavar="{auto,cpu,cuda,mps}", default="auto", help="default auto")


def _stride_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stride", metavar="N", type=int,
                        help="for texts longer than the context: tokens each new window scores "
                             "(default half the context length)")


# -- commands -------------------------------------------------------------------------


def score_command(args: argparse.Namespace) -> int:
    from engine.insight.scoring import score_ids
    from engine.insight.tokens import encode

    _check_positive(args, "top_k", "stride")
    ids = encode(_read_file_or_stdin(args.source))  # an empty text fails before a model is loaded
    score = score_ids(_load(args), ids, top_k=args.top_k, stride=args.stride)
    if args.json:
        _print_json({"totals": score.totals(), "tokens": [_token_as_json(t) for t in score.tokens]})
    else:
        print(_totals_table([("", score)]))
    return 0


def lens_command(args: argparse.Namespace) -> int:
    from engine.insight.logit_lens import logit_lens_ids, resolve_position
    from engine.insight.tokens import encode

    _check_positive(args, "top_k")
    ids = encode(_read_text_or_file(args.text))
    resolve_position(args.position, len(ids))  # a bad position fails before a model is loaded
    table = logit_lens_ids(_load(args), ids, args.position, top_k=args.top_k)
    if args.json:
        _print_json(table.as_dict())
        return 0
    print(f"next token after #{table.position} {table.token!r}")
    for layer, row in enumerate(table.rows, start=1):
        print(f"layer {layer:>2}  " + "  ".join(f"{a.text!r} {a.prob:.3g}" for a in row))
    return 0


def attention_command(args: argparse.Namespace) -> int:
    from engine.insight.attention import attention_maps_ids
    from engine.insight.tokens import encode

    ids = encode(_read_text_or_file(args.text))
    maps = attention_maps_ids(_load(args), ids)
    if maps.truncated:
        print(f"note: only the first {len(maps.ids)} tokens (the context window) are looked at", file=sys.stderr)
    summaries = maps.summaries()
    if args.json:
        data: dict[str, Any] = {"tokens": maps.tokens, "heads": [s.as_dict() for s in summaries]}
        if args.weights:
            data["weights"] = maps.weights.tolist()
        _print_json(data)
        return 0
    rows = [("LAYER", "HEAD", "ENTROPY", "PREVIOUS", "FIRST", "SAME", "LOOKS AT")] + [
        (str(s.layer), str(s.head), f"{s.entropy:.2f}", f"{s.previous:.2f}", f"{s.first:.2f}", f"{s.same:.2f}",
         s.looks_at) for s in summaries]
    print(_table(rows, numeric=range(6)))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from engine.insight.compare import compare_ids
    from engine.insight.tokens import encode
    from engine.training.device import resolve_device

    _check_positive(args, "top", "stride")
    ids = encode(_read_file_or_stdin(args.source))
    device = resolve_device(args.device)
    model_a = _load_named(args, args.model_a, device)
    model_b = _load_named(args, args.model_b, device)
    comparison = compare_ids(model_a, model_b, ids, stride=args.stride, top_k=0)
    improved, worsened = comparison.most_improved(args.top), comparison.most_worsened(args.top)
    if args.json:
        _print_json({"a": {"model": args.model_a, **comparison.a.totals()},
                     "b": {"model": args.model_b, **comparison.b.totals()},
                     "mean_loss_delta": comparison.mean_delta,
                     "most_improved": [d.as_dict() for d in improved],
                     "most_worsened": [d.as_dict() for d in worsened],
                     "tokens": [d.as_dict() for d in comparison.diffs]})
        return 0
    print(_totals_table([(f"A {args.model_a}", comparison.a), (f"B {args.model_b}", comparison.b)]))
    print(f"\nB - A mean loss: {comparison.mean_delta:+.4f} nats")
    for title, diffs in (("most improved in B", improved), ("most worsened in B", worsened)):
        print(f"\n{title}:")
        rows = [("POS", "TOKEN", "LOSS A", "LOSS B", "DELTA")] + [
            (str(d.position), repr(d.text), f"{d.loss_a:.3f}", f"{d.loss_b:.3f}", f"{d.delta:+.3f}") for d in diffs]
        print(_table(rows, numeric={0, 2, 3, 4}) if diffs else "  (none)")
    return 0


# -- models and text --------------------------------------------------------------------


def _load(args: argparse.Namespace):
    """The model chosen by --run-name/--checkpoint/--model, loaded as `generate` loads it."""
    from engine.errors import ConfigError
    from engine.training.device import resolve_device

    from tui_gpt.cli.commands import chosen_model, load_model

    if args.best and not args.run_name:
        raise ConfigError("--best goes with --run-name NAME")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    return load_model(chosen_model(args), resolve_device(args.device), args.seed)


def _load_named(args: argparse.Namespace, spec: str, device):
    """`compare`'s A or B: an existing path, a run name (NAME@best for its best checkpoint), or a --model spec."""
    from engine.runs.store import RunStore
    from engine.weights.resolver import ModelSpec

    from tui_gpt.cli.commands import load_model

    name, _, which = spec.partition("@")
    store = RunStore(getattr(args, "data_dir", None))
    as_run = not Path(spec).exists() and which in ("", "best") and _is_run(store, name)
    chosen = (ModelSpec(name, kind="run", best=which == "best", data_dir=store.data_dir) if as_run
              else ModelSpec(spec))
    return load_model(chosen, device, args.seed)


def _is_run(store, name: str) -> bool:
    from engine.errors import RunError

    try:
        return store.exists(name)
    except RunError:  # not a valid run name, so not a run
        return False


def _read_file_or_stdin(source: str) -> str:
    from engine.errors import ConfigError

    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{source}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a UTF-8 text file") from None


def _read_text_or_file(text: str) -> str:
    """TEXT|FILE: a file's contents when it names one, stdin for '-', else the text itself."""
    return _read_file_or_stdin(text) if text == "-" or Path(text).is_file() else text


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    from engine.errors import ConfigError

    for name in names:
        value = getattr(args, name)
        if value is not None and value < (0 if name == "top_k" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'top_k' else '>= 1'}, got {value}")


# -- output ------------------------------------------------------------------------------


def _token_as_json(t) -> dict[str, Any]:
    return {"position": t.position, "token_id": t.token_id, "text": t.text, "prob": t.prob, "rank": t.rank,
            "loss": t.loss, "context": t.context,
            "top": [{"token_id": a.token_id, "text": a.text, "prob": a.prob} for a in t.alternatives]}


def _totals_table(scores) -> str:
    rows = [("", "TOKENS", "SCORED", "MEAN LOSS", "PERPLEXITY", "BITS/BYTE", "WINDOWS")] + [
        (label, str(s.totals()["tokens"]), str(len(s.tokens)), f"{s.mean_loss:.4f}", f"{s.perplexity:.2f}",
         f"{s.bits_per_byte:.4f}", str(len(s.windows))) for label, s in scores]
    if len(rows) == 2 and not rows[1][0]:  # one model: no label column
        rows = [row[1:] for row in rows]
        return _table(rows, numeric=range(6))
    return _table(rows, numeric=range(1, 7))


def _table(rows, numeric) -> str:
    numeric = set(numeric)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows)


def _print_json(data: Any) -> None:
    # NaN and infinity are not JSON: they are written as null.
    print(json.dumps(_finite(data), indent=2, ensure_ascii=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
