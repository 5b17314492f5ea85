"""A training run: a TrainConfig turned into a run folder, a model and a TrainingLoop.

`train_run` is the one entry point that `tui-gpt train`, the TUI (through that
command) and torchrun share. It validates everything before it creates a run
folder, holds the run's lock while it trains, records every event in
`metrics.jsonl`, and saves checkpoints from which a run resumes exactly.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Sampler, Subset, default_collate

from engine.training import distributed
from engine.runs.checkpoints import best_checkpoint
from engine.training.checkpointing import load_latest_valid, save_checkpoint
from engine.training.state_codec import state_to_tensors
from engine.model.config import GPTConfig, get_preset
from engine.data.corpus import require_tokens
from engine.data.windows import TokenWindowDataset
from engine.training.device import autocast_dtype
from engine.training.mfu import peak_flops, training_flops_per_token
from engine.fast.chunked_loss import chunked_loss_batch
from engine.training.loss import calc_loss_batch
from engine.fast.compiled import compile_for_training
from engine.errors import ConfigError, CorpusError, RunError, TuiGptError
from engine.runs.events import (CheckpointSaved, CorpusPreparing, EvalDone, Event, MetricsWriter, RunEnded, RunStarted,
                                SampleGenerated, StepDone)
from engine.runs.preparation import PreparationRecord, preparation_path
from engine.model.gpt import GPTModel
from engine.runs.store import RunStore, validate_run_name
from engine.runs.atomic import write_error
from engine.runs.untrusted_files import open_regular_for_writing
from engine.data.training_data import load_training_data
from engine.model.tokenizer import get_tokenizer
from engine.training.settings import TrainConfig
from engine.training.loop import LoopPosition, LoopSettings, NonFiniteLoss, TrainingLoop

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class RunOutcome:
    run_name: str
    state: str  # "finished", "stopped" or "failed"
    step: int
    message: str = ""


class EpochOrder(Sampler[int]):
    """Shuffles each epoch and remembers the order, so a run can resume mid-epoch.

    On one process it draws its seed from torch's global generator exactly as
    `DataLoader(shuffle=True)` does, which keeps the book's run reproducible.
    Under torchrun every rank needs the same order, so it seeds from (seed,
    epoch) instead and gives each rank every world_size-th window.
    """

    def __init__(self, n: int, ctx: distributed.Distributed, seed: int):
        self.n, self.ctx, self.seed = n, ctx, seed
        self.epoch = 0
        self.order: list[int] = []

    def __len__(self) -> int:
        return self.n // self.ctx.world_size

    def __iter__(self):
        generator = torch.Generator()
        if self.ctx.enabled:
            generator.manual_seed(self.seed * 1_000_003 + self.epoch)
            full = torch.randperm(self.n, generator=generator).tolist()
            self.order = full[self.ctx.rank : len(self) * self.ctx.world_size : self.ctx.world_size]
        else:
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            self.order = torch.randperm(self.n, generator=generator).tolist()
        yield from self.order


class SampledWindows(Sampler[int]):
    """For a run shorter than one epoch: `draws` windows drawn at random, as nanoGPT samples its batches.

    A shuffled epoch of a corpus of billions of tokens would be a permutation of millions of
    windows, held in memory and saved in every checkpoint; the run reads only `draws` of
    them. The draw depends only on (seed, rank), so each torchrun rank reads its own windows
    and a resumed run draws them again exactly, even with a larger --max-steps: they are
    drawn in whole chunks, so a longer draw begins with the shorter one.
    """

    CHUNK = 4096

    def __init__(self, n: int, draws: int, ctx: distributed.Distributed, seed: int):
        self.n, self.draws, self.ctx, self.seed = n, draws, ctx, seed
        self.epoch = 0
        self.order: list[int] = []

    def __len__(self) -> int:
        return self.draws

    def __iter__(self):
        yield from self.draw()

    def draw(self) -> list[int]:
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 65_537 + self.ctx.rank)
        chunks = [torch.randint(self.n, (self.CHUNK,), generator=generator) for _ in range(0, self.draws, self.CHUNK)]
        self.order = torch.cat(chunks)[: self.draws].tolist()
        return self.order


def _replay(dataset, order: list[int], batch_size: int, skip: int):
    """The rest of an epoch whose order was saved, drawing no random numbers."""
    for start in range(skip * batch_size, len(order) - batch_size + 1, batch_size):
        yield default_collate([dataset[i] for i in order[start : start + batch_size]])


def _shard(dataset, ctx: distributed.Distributed, even: bool = False):
    """This rank's every world_size-th window; with `even`, the same number on every rank.

    Under FSDP every forward pass is a collective (each block gathers its weights),
    so all ranks must evaluate the same number of batches.
    """
    if not ctx.enabled:
        return dataset
    end = len(dataset) - len(dataset) % ctx.world_size if even else len(dataset)
    return Subset(dataset, range(ctx.rank, end, ctx.world_size))


def _build_model(config: TrainConfig, device: torch.device) -> GPTModel:
    """A fresh model from the preset, or weights to start from (GPT-2, a checkpoint)."""
    overrides = dict(config.model_overrides)
    if not config.init_from:
        return GPTModel(get_preset(config.preset).with_overrides(**overrides)).to(device)
    from engine.weights.resolver import resolve_model

    model = resolve_model(config.init_from, device=str(device)).model
    cfg = model.cfg
    context = overrides.pop("context_length", cfg.context_length)
    if context > cfg.context_length:
        raise ConfigError(f"context_length {context} exceeds the {cfg.context_length} of {config.init_from}")
    if "drop_rate" in overrides:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = overrides["drop_rate"]
    differing = {k: v for k, v in overrides.items() if k != "drop_rate" and getattr(cfg, k) != v}
    if differing:
        raise ConfigError(f"cannot change {', '.join(differing)} of pretrained weights from {config.init_from}")
    if context < cfg.context_length:
        # Keep the first `context` learned positions, as nanoGPT's crop_block_size does.
        model.pos_emb.weight = torch.nn.Parameter(model.pos_emb.weight.detach()[:context].clone())
        model.pos_emb.num_embeddings = context
    model.cfg = cfg.with_overrides(context_length=context, drop_rate=overrides.get("drop_rate", cfg.drop_rate))
    return model


class _RunLog:
    """train.log: one readable line per evaluation, sample, checkpoint and ending."""

    def __init__(self, path: Path | None):
        self.file, self.path = None, path
        if path:
            fd = open_regular_for_writing(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self.file = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        if self.file:
            try:
                self.file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
                self.file.flush()
            except OSError as exc:
                raise write_error(self.path, exc) from exc

    def close(self) -> None:
        if self.file:
            self.file.close()


def train_run(config: TrainConfig | None = None, *, run_name: str | None = None, data_dir=None, resume: bool = False,
              corpus_named: bool = False, on_event: Callable[[Event], None] | None = None,
              should_stop: Callable[[], bool] | None = None, log: Callable[[str], None] | None = None) -> RunOutcome:
    """Start (or with `resume`, continue) a run; returns how it ended.

    A resumed run trains on the corpus it recorded, unless `corpus_named` (the
    person named one for this resume): then on `config.corpus`.
    Bad input raises a TuiGptError before anything is written; failures while
    training (non-finite loss, out of memory, disk full) end the run as "failed"
    with a one-line message, keeping the last good checkpoint.
    """
    if run_name is not None:
        validate_run_name(run_name)  # an explicitly empty name is a mistake, not a request for a made-up one
    ctx, device = distributed.setup(config.device if config else "auto")
    try:
        return _train(config, ctx, device, run_name, data_dir, resume, corpus_named, on_event,
                      should_stop or (lambda: False), log)
    finally:
        distributed.teardown(ctx)


def _train(config, ctx, device, run_name, data_dir, resume, corpus_named, on_event, should_stop, log) -> RunOutcome:
    store = RunStore(data_dir)
    say = log if (log and ctx.is_main) else (lambda line: None)
    with contextlib.ExitStack() as held:
        if resume:
            if not run_name:
                raise RunError("--resume needs the name of the run to continue (--run-name NAME)")
            run = store.open(run_name)
            if ctx.is_main:
                held.enter_context(run.lock())
            stored = run.read_config()
            config = config or TrainConfig.from_dict(stored["train"])
            if not corpus_named:
                config = config.with_overrides(corpus=_recorded_corpus(stored))
        elif config is None:
            raise ConfigError("a new run needs a training config")

        # Everything that can be wrong with the input fails here, before a new run folder exists.
        if ctx.is_main:  # one rank tokenizes; the others read its cache
            with _reporting_preparation(store, run_name, on_event) as report:
                corpus = splits = _training_data(config, store.cache_dir, report)
            for warning in corpus.warnings:
                say(f"warning: {warning}")
        ctx.barrier()
        if not ctx.is_main:
            corpus = splits = _training_data(config, store.cache_dir)
        if resume and not corpus_named and corpus.fingerprint != stored["corpus"]["fingerprint"]:
            raise CorpusError(f"the run's corpus {corpus.path or corpus.name} changed since the run started; "
                              "to train on it as it is now, name it with --corpus")
        if corpus.path is not None:
            config = config.with_overrides(corpus=str(corpus.path))  # recorded absolute: resumable from anywhere
        if config.val_corpus and not config.val_corpus.startswith("hf:"):
            config = config.with_overrides(val_corpus=str(Path(config.val_corpus).expanduser().absolute()))
        if resume:
            model = GPTModel(GPTConfig.from_dict(stored["model"])).to(device)
        else:
            torch.manual_seed(config.seed)  # right before the model: the book's initial weights for seed 123
            model = _build_model(config, device)
        sharded = config.fsdp and ctx.enabled  # on one process there is nothing to shard across
        if sharded:
            from engine.training.sharding import shard_model

            shard_model(model)  # before the optimizer, which must hold the sharded parameters
        context = model.cfg.context_length
        require_tokens(len(splits.train), context, "training")
        require_tokens(len(splits.val), context, "validation")
        stride = config.stride or context
        data = _RunData(TokenWindowDataset(splits.train, context, stride), TokenWindowDataset(splits.val, context, stride))
        steps_per_epoch = (len(data.train) // ctx.world_size) // config.batch_size // config.grad_accum_steps
        if steps_per_epoch == 0:
            raise ConfigError(
                f"the training split has {len(data.train)} windows of {context} tokens, fewer than one step needs "
                f"({config.batch_size * config.grad_accum_steps * ctx.world_size}); lower --batch-size or --context-length"
            )
        # With max_steps the step count alone decides the length of the run, as in nanoGPT.
        epochs = config.epochs if config.max_steps is None else 1 + (config.max_steps - 1) // steps_per_epoch
        total_steps = config.max_steps or epochs * steps_per_epoch
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                      fused=True if device.type in ("cuda", "cpu") else None)
        resumed = _load_resume_state(run, model, optimizer, corpus.fingerprint, say, sharded) if resume else None

        if not resume:
            if ctx.is_main:
                run_name = run_name or store.new_run_name("finetune" if config.init_from else config.preset)
                run = store.create(run_name, {
                    "name": run_name,
                    "preset": config.preset if not config.init_from else config.init_from,
                    "model": model.cfg.to_dict(),
                    "train": config.to_dict(),
                    "corpus": {"path": corpus.path and str(corpus.path), "name": corpus.name,
                               "fingerprint": corpus.fingerprint, "train_tokens": len(splits.train),
                               "val_tokens": len(splits.val)},
                })
                held.enter_context(run.lock())
            run = store.open(ctx.broadcast_text(run.name if ctx.is_main else ""))
        # Only the first rank reports MFU; on a CPU its peak is measured once per machine (cached).
        peak = peak_flops(device, autocast_dtype(device, config.precision), store.cache_dir) if ctx.is_main else None
        return _train_locked(config, ctx, device, run, model, optimizer, resumed, data, epochs, total_steps,
                             corpus.fingerprint, on_event, should_stop, say, peak, sharded)


def _training_data(config: TrainConfig, cache_dir: Path, report: Callable[[CorpusPreparing], None] | None = None):
    """The run's tokens; a source prepared now reports its progress to `report` as it goes."""

    def on_progress(progress) -> None:
        report(CorpusPreparing(bytes_read=progress.bytes_read, bytes_total=progress.bytes_total,
                               tokens=progress.tokens, documents=progress.documents, seconds=progress.seconds))

    return load_training_data(config.corpus, cache_dir, corpus_format=config.corpus_format,
                              text_field=config.text_field, val_corpus=config.val_corpus,
                              train_ratio=config.train_ratio, seed=config.seed,
                              on_progress=on_progress if report else None)


@contextlib.contextmanager
def _reporting_preparation(store: RunStore, run_name: str | None, on_event):
    """Where a preparation's progress goes: `on_event`, and a named run's preparation file for the app.

    The file (engine.runs.preparation) stands in for the run folder, which does not exist
    yet; it is removed when the preparation ends, however it ends.
    """
    record = PreparationRecord(preparation_path(store.runs_dir, run_name)) if run_name else None

    def report(event: CorpusPreparing) -> None:
        if record:
            record.write(event)
        if on_event:
            on_event(event)

    try:
        yield report
    finally:
        if record:
            record.close()


def _recorded_corpus(stored: dict) -> str | None:
    """What the run was started on: an absolute path, hf:NAME or None (the demo corpus); CorpusError if it is gone."""
    path = stored["corpus"]["path"]
    if path is None:
        return stored["train"].get("corpus")  # the demo corpus (None) or a dataset's name (hf:NAME)
    if not Path(path).exists():
        raise CorpusError(f"the run's corpus {path} is gone; to continue on another, name it with --corpus")
    return path


@dataclass
class _RunData:
    train: TokenWindowDataset
    val: TokenWindowDataset


@dataclass
class _ResumeState:
    position: LoopPosition
    order: list[int] | None  # the interrupted epoch's order, when it was interrupted mid-epoch
    rng: dict


def _load_resume_state(run, model, optimizer, fingerprint: str, say, sharded: bool) -> _ResumeState:
    restored = {}

    def restore(checkpoint) -> None:
        state = checkpoint.training_state()
        if sharded:
            from engine.training.sharding import load_full_state

            load_full_state(model, optimizer, checkpoint.model_state, state["optimizer"])
        else:
            model.load_state_dict(checkpoint.model_state)
            optimizer.load_state_dict(state["optimizer"])
        position = LoopPosition(**state["position"])
        if not isinstance(state["corpus_fingerprint"], str) or "rank0" not in state["rng"]:
            raise ValueError("no corpus fingerprint or random state")
        restored.update(state=state, position=position,
                        order=state["order"].tolist() if position.batches_done else None)

    checkpoint, warnings = load_latest_valid(run.checkpoints_dir, map_location="cpu", use=restore)
    for warning in warnings:
        say(f"warning: {warning}")
    if checkpoint is None:
        raise RunError(f"run {run.name} has no valid checkpoint to resume from")
    state, position, order = restored["state"], restored["position"], restored["order"]
    if state["corpus_fingerprint"] != fingerprint:
        say(f"warning: the corpus changed since step {position.step}; the data order will differ")
        order, position.batches_done = None, 0
    say(f"resuming {run.name} from {checkpoint.path} (step {position.step})")
    return _ResumeState(position, order, state["rng"])


def _train_locked(config, ctx, device, run, model, optimizer, resumed: _ResumeState | None, data: _RunData,
                  epochs, total_steps, fingerprint, on_event, should_stop, say, peak: float | None,
                  sharded: bool) -> RunOutcome:
    train_set, val_set = data.train, data.val
    position = resumed.position if resumed else LoopPosition()
    resume_order = resumed.order if resumed else None
    writer = MetricsWriter(run.metrics_path) if ctx.is_main else None
    run_log = _RunLog(run.log_path if ctx.is_main else None)

    train_model = compile_for_training(model, device, say) if config.compile else model
    compiling = train_model is not model

    def emit(event: Event) -> None:
        nonlocal compiling
        if compiling and isinstance(event, StepDone):
            compiling = False
            line = f"torch.compile: the first step took {event.step_time:.1f} s, compiling included"
            say(line)
            run_log(line)
        if writer:
            writer.write(event)
            _log_event(run_log, event)
        if on_event and ctx.is_main:
            on_event(event)

    if sharded:
        # A stop request cuts a sample short; under FSDP every rank must cut it at the same token.
        should_stop = _agreed(should_stop, ctx)
    elif ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    per_rank_epoch = len(train_set) // ctx.world_size // config.batch_size // config.grad_accum_steps
    if total_steps < per_rank_epoch:  # the run reads less than an epoch: draw its windows, not a permutation
        sampler = SampledWindows(len(train_set), total_steps * config.grad_accum_steps * config.batch_size, ctx,
                                 config.seed)
    else:
        sampler = EpochOrder(len(train_set), ctx, config.seed)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    # The book evaluates on its shuffled training loader; a second loader keeps that draw
    # from disturbing the order the training loop is recording.
    train_eval_loader = DataLoader(_shard(train_set, ctx, even=sharded), batch_size=config.batch_size, shuffle=True,
                                   drop_last=True)
    val_loader = DataLoader(_shard(val_set, ctx, even=sharded), batch_size=config.batch_size, shuffle=False,
                            drop_last=False)

    def epoch_batches(epoch: int, skip: int):
        nonlocal resume_order
        sampler.epoch = epoch
        if skip and isinstance(sampler, SampledWindows):
            return _replay(train_set, sampler.draw(), config.batch_size, skip)
        if skip and resume_order is not None:
            sampler.order, order, resume_order = resume_order, resume_order, None
            return _replay(train_set, order, config.batch_size, skip)
        return train_loader

    def on_checkpoint(reason: str) -> None:
        rng = {f"rank{r}": s for r, s in enumerate(ctx.gather_tensor(torch.get_rng_state()))}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        model_state = optimizer_state = None
        if sharded:  # every rank sends its shards; rank 0 receives the whole state
            from engine.training.sharding import full_model_state, full_optimizer_state

            model_state, optimizer_state = full_model_state(model), full_optimizer_state(model, optimizer)
        # Rank 0 saves; a failure there (a full disk) ends every rank with its message.
        ctx.run_on_main(lambda: save_checkpoint_now(reason, rng, model_state, optimizer_state))

    def save_checkpoint_now(reason: str, rng: dict, model_state, optimizer_state) -> None:
        tensors, meta = state_to_tensors({
            "format": CHECKPOINT_FORMAT,
            "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
            "position": asdict(loop.pos),
            "order": torch.tensor(sampler.order, dtype=torch.int64),
            "rng": rng,
            "corpus_fingerprint": fingerprint,
            "world_size": ctx.world_size,
            "reason": reason,
        })
        path = save_checkpoint(run.checkpoints_dir, loop.pos.step, model, tensors, meta,
                               val_loss=loop.pos.last_val_loss, keep_last=config.keep_last, model_state=model_state)
        emit(CheckpointSaved(step=loop.pos.step, path=str(path), val_loss=loop.pos.last_val_loss,
                             best=_is_best(run.checkpoints_dir, path)))

    settings = LoopSettings(
        epochs=epochs, total_steps=total_steps, eval_freq=config.eval_freq, eval_iter=config.eval_iter, lr=config.lr,
        warmup_steps=config.warmup_steps, min_lr=config.min_lr, grad_accum_steps=config.grad_accum_steps,
        grad_clip=config.grad_clip, start_context=config.start_context, sample_tokens=config.sample_tokens,
        sample_at_eval=config.sample_at_eval,
        autocast_dtype=autocast_dtype(device, config.precision),
        flops_per_token=training_flops_per_token(model, model.cfg.context_length), peak_flops=peak,
    )
    loop = TrainingLoop(
        train_model, optimizer, device, settings, get_tokenizer(), epoch_batches, train_eval_loader, val_loader,
        emit=emit, should_stop=should_stop, on_checkpoint=on_checkpoint, position=position, raw_model=model,
        checkpoint_every=config.checkpoint_every, checkpoint_minutes=config.checkpoint_minutes, world_size=ctx.world_size,
        # The chunked loss applies the output head's weight outside the model's forward, where FSDP
        # holds only this rank's shard of it (a DTensor) and would not reduce its gradient: the book's loss.
        loss_batch=calc_loss_batch if sharded else chunked_loss_batch, agree=ctx.any, average=ctx.mean,
    )
    if resumed:
        # Last, after everything that draws random numbers while setting up.
        torch.set_rng_state(resumed.rng.get(f"rank{ctx.rank}", resumed.rng["rank0"]))
        if device.type == "cuda" and "cuda" in resumed.rng:
            torch.cuda.set_rng_state(resumed.rng["cuda"], device)
    if ctx.is_main:
        run.write_status("running", step=position.step)
    emit(RunStarted(run=run.name, resumed=resumed is not None, step=position.step, total_steps=total_steps,
                    n_params=model.num_parameters(), device=str(device), world_size=ctx.world_size,
                    tokens_seen=position.tokens_seen))
    state, message = "failed", ""
    try:
        state = loop.run()
        message = "stopped on request; resume with --resume" if state == "stopped" else ""
    except NonFiniteLoss as error:
        message = str(error)
    except torch.OutOfMemoryError:
        message = (f"out of memory on {device} at step {loop.pos.step}; "
                   "try a smaller --batch-size or --context-length")
    except TuiGptError as error:  # e.g. a full disk while saving a checkpoint
        message = str(error)
    except RuntimeError as error:
        if "out of memory" not in str(error) and "can't allocate memory" not in str(error):
            raise
        message = f"out of memory on {device} at step {loop.pos.step}; try a smaller --batch-size or --context-length"
    finally:
        if state == "failed" and not message:
            message = "the run ended with an internal error; see train.log"
        # Recording the ending must not hide why the run ended: on a full disk these writes may fail too.
        with contextlib.suppress(OSError, TuiGptError):
            emit(RunEnded(step=loop.pos.step, state=state, message=message))
        if ctx.is_main:
            run.write_status(state, step=loop.pos.step, message=message)
        with contextlib.suppress(OSError):
            if writer:
                writer.close()
            run_log.close()
    return RunOutcome(run_name=run.name, state=state, step=loop.pos.step, message=message)


def _agreed(should_stop: Callable[[], bool], ctx: distributed.Distributed) -> Callable[[], bool]:
    return lambda: ctx.any(should_stop())


def _is_best(checkpoints_dir: Path, path: Path) -> bool:
    best = best_checkpoint(checkpoints_dir)
    return best is not None and Path(best.path) == Path(path)


def _log_event(run_log: _RunLog, event: Event) -> None:
    if isinstance(event, EvalDone):
        run_log(f"step {event.step} epoch {event.epoch + 1}: train loss {event.train_loss:.4f}, "
                f"val loss {event.val_loss:.4f} (ppl {event.val_ppl:.1f})")
    elif isinstance(event, SampleGenerated):
        run_log(f"sample at step {event.step}: {event.text!r}")
    elif isinstance(event, CheckpointSaved):
        run_log(f"checkpoint at step {event.step}: {event.path}")
    elif isinstance(event, RunStarted):
        run_log(f"{'resumed' if event.resumed else 'started'} {event.run} on {event.device} "
                f"at step {event.step} of {event.total_steps}")
    elif isinstance(event, RunEnded):
        run_log(f"{event.state} at step {event.step}" + (f": {event.message}" if event.message else ""))
