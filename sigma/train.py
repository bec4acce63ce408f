"""The training loop: shards in, checkpoints and metrics out.

One screen of loop (nanoGPT) with resumable state (torchtitan): the model, the optimizer, the
data position of every rank, the RNG states and the step are all in the checkpoint, and the
schedule is a function of the step, so a resumed run computes the same losses as an
uninterrupted one. Several GPUs: launch with ``torchrun``, or on a Ray cluster through Ray Train
(``sigma.ray_train``); each rank reads its own row groups.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.distributed as dist
from pydantic import ConfigDict, TypeAdapter
from torch import Tensor, nn

from configs import read_yaml_mapping
from sigma.attention import check_attention_kernel, sdpa_attention
from sigma.averaging import EMA_FILE, WeightAverage
from sigma.checkpoint import find_checkpoint, load_training_state, load_weights, read_checkpoint, save_checkpoint
from sigma.config import PRESETS, ModelConfig, resolve_model_config
from sigma.flops import peak_flops, training_flops_per_token
from sigma.metrics import MetricsLog, TrainingProgress
from sigma.model import Transformer
from sigma.optimizer import build_optimizer, learning_rate
from sigma.packing import HELD_OUT, TRAIN, DataMixture, SequenceStream, document_layout
from sigma.parallel import FullShards, gradient_sync, parallelize, scalar
from sigma.shards import ShardSet
from sigma.token_stream import TokenWindows, is_token_stream
from sigma.tokenizer import TOKENIZER_FILE, end_of_text_id, load_tokenizer, train_on_shards


@dataclass(frozen=True)
class TrainConfig:
    __pydantic_config__ = ConfigDict(extra="forbid")

    model: str | dict[str, Any] = "sigma-tiny"  # a preset, or {preset: NAME, <field>: <override>}
    seq_len: int | None = None  # default: the model's max_seq_len, at most 2048
    batch_size: int = 8  # sequences per micro-batch and rank
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: Literal["cosine", "wsd"] = "cosine"
    decay_fraction: float = 0.2  # WSD only
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    data_weights: tuple[float, ...] | None = None  # one per --data folder; default equal
    held_out_fraction: float = 0.01  # of documents, chosen by id hash
    lanes: int = 8  # row groups each data folder reads side by side, to mix documents in a batch
    eval_every: int = 250
    eval_sequences: int = 64
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    doc_mask: bool = False  # keep attention (and RoPE positions) inside documents
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA
    compile: bool | None = None  # default: on CUDA
    parallel: Literal["ddp", "fsdp"] = "ddp"  # several ranks: replicas, or parameters and optimizer state sharded
    loss_chunk: int = 0  # tokens per chunk of the loss, never the full logits at once; 0: all at once
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    ema_decay: float = 0.0  # > 0: keep a moving average of the weights, saved with each checkpoint (sigma/averaging.py)

    def model_config(self) -> ModelConfig:
        return resolve_model_config(self.model)

    def sequence_length(self) -> int:
        return self.seq_len or min(2048, self.model_config().max_seq_len)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return TypeAdapter(cls).validate_python(values)

    @classmethod
    def load(cls, spec: str | Path) -> "TrainConfig":
        """A YAML file of TrainConfig fields (one under configs/ read from the package when it is not
        there from here), or a model preset name with default training settings."""
        path = Path(spec)
        if path.suffix in (".yaml", ".yml") or path.is_file():
            return cls.from_dict(read_yaml_mapping(spec, "train config", "TrainConfig fields"))
        if str(spec) in PRESETS:
            return cls(model=str(spec))
        raise ValueError(f"{spec!r} is neither a YAML file nor a model preset ({', '.join(PRESETS)})")

    def override(self, **changes: Any) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@contextmanager
def distributed_run() -> Iterator[Distributed]:
    """The process group torchrun describes in the environment (nothing for one process), left at
    the end when this made it (Ray Train makes and ends its own): a rank that exits with the group's
    threads still running can abort ("terminate called without an active exception") and fail a
    finished run."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Distributed()
        return
    made = not dist.is_initialized()
    if made:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield Distributed(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    finally:
        if made:
            dist.destroy_process_group()


def pick_device(requested: str | None, distributed: Distributed) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        torch.cuda.set_device(distributed.local_rank)
        return torch.device("cuda", distributed.local_rank)
    return torch.device("cpu")


class VocabularyError(ValueError):
    """The tokenizer has more tokens than the model has embeddings: the user's files disagree."""


def _resolve_tokenizer(
    explicit: str | Path | None, checkpoint_tokenizer: Path | None, data_dirs: Sequence[Path], out: Path,
    vocab_size: int, distributed: Distributed, say: Any,
) -> Path:
    """The checkpoint's tokenizer, else the one given, else one beside the first shards, else train one."""
    if checkpoint_tokenizer is not None:
        return checkpoint_tokenizer
    if explicit is not None:
        path = Path(explicit)
        return path / TOKENIZER_FILE if path.is_dir() else path
    beside_data = data_dirs[0] / TOKENIZER_FILE
    if beside_data.exists():
        return beside_data
    trained = out / TOKENIZER_FILE
    if distributed.is_main and not trained.exists():
        say(f"training a byte-level BPE tokenizer (vocab {vocab_size}) on {', '.join(map(str, data_dirs))}")
        train_on_shards(data_dirs, vocab_size, out)
    if distributed.enabled:
        dist.barrier()
    return trained


def _check_resumable(state: dict[str, Any], config: TrainConfig, distributed: Distributed) -> None:
    """The data position only means the same thing under the same model, sequences, seed and ranks.

    Steps, learning rate and mixture weights may change on resume (to extend a run, say).
    """
    saved = TrainConfig.from_dict(state["train_config"])
    changed = [
        name for name, old, new in (
            ("model", saved.model_config(), config.model_config()),
            ("seq_len", saved.sequence_length(), config.sequence_length()),
            ("seed", saved.seed, config.seed),
            ("held_out_fraction", saved.held_out_fraction, config.held_out_fraction),
            ("lanes", saved.lanes, config.lanes),
            ("world_size", state["world_size"], distributed.world_size),
            ("parallel", saved.parallel, config.parallel),
        ) if old != new
    ]
    if changed:
        raise ValueError(f"cannot resume: {', '.join(changed)} differ from the checkpoint's")


def _held_out_sets(
    shard_sets: Sequence[ShardSet], tokenizer: Any, seq_len: int, config: TrainConfig
) -> list[tuple[str, Tensor]]:
    """The first windows of each folder's held-out documents, one pass at most; fixed for the run."""
    per_set = max(1, config.eval_sequences // len(shard_sets))
    names = [s.root.name for s in shard_sets]
    sets = []
    for shard_set in shard_sets:
        name = shard_set.root.name
        if names.count(name) > 1:  # round-1/curate, round-2/curate: tell them apart
            name = f"{shard_set.root.parent.name}/{name}"
        try:
            stream = SequenceStream(
                shard_set, tokenizer, seq_len, split=HELD_OUT,
                held_out_fraction=config.held_out_fraction, seed=config.seed,
            )
            windows = []
            while len(windows) < per_set and stream.epoch == 0:
                windows.append(torch.from_numpy(next(stream)))
        except ValueError:  # no held-out documents in this folder
            continue
        if windows:
            sets.append((name, torch.stack(windows)))
    return sets


@torch.no_grad()
def evaluate(
    model: nn.Module, held_out: Sequence[tuple[str, Tensor]], batch_size: int, device: torch.device,
    autocast: Any, eos_id: int | None, distributed: Distributed, sharded: bool = False,
) -> dict[str, float]:
    """Mean held-out loss per folder and over all; ranks split the windows and sum. A sharded
    model runs collectives in every forward pass, so there each rank runs all the windows."""
    was_training = model.training
    model.eval()
    split = distributed.enabled and not sharded
    totals = torch.zeros(len(held_out), 2, dtype=torch.float64, device=device)  # loss sum, windows
    for index, (_, windows) in enumerate(held_out):
        mine = windows[distributed.rank :: distributed.world_size] if split else windows
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size].to(device)
            with autocast:
                loss = model(batch[:, :-1], batch[:, 1:], **_document_kwargs(batch[:, :-1], eos_id))
            totals[index, 0] += loss.double() * len(batch)
            totals[index, 1] += len(batch)
    if split:
        dist.all_reduce(totals)
    model.train(was_training)
    result = {f"eval_loss/{name}": (totals[i, 0] / totals[i, 1]).item() for i, (name, _) in enumerate(held_out)}
    result["eval_loss"] = (totals[:, 0].sum() / totals[:, 1].sum()).item()
    result["eval_ppl"] = math.exp(min(result["eval_loss"], 50.0))
    return result


def _document_kwargs(inputs: Tensor, eos_id: int | None) -> dict[str, Tensor]:
    if eos_id is None:
        return {}
    doc_ids, positions = document_layout(inputs, eos_id)
    return {"doc_ids": doc_ids, "positions": positions}


def train(
    config: TrainConfig,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    resume: bool = False,
    tokenizer: str | Path | None = None,
    stop_at: int | None = None,
    device: str | None = None,
    progress: bool = True,
    init_from: str | Path | None = None,
    relay: Any = None,
) -> dict[str, Any]:
    """Train ``config`` on the shard folders ``data_dirs``; write checkpoints and metrics to ``out_dir``.

    ``stop_at`` ends the run early at that step, with a checkpoint, as if it were interrupted
    there (the schedule still spans ``max_steps``). ``init_from`` (a run folder or a checkpoint)
    starts a new run from those weights and that tokenizer, with a fresh optimizer, schedule and
    data position (continued pretraining on new data); a run that has checkpoints of its own
    resumes from them instead. ``relay`` takes the main rank's messages (``print``) and progress
    bar (``progress``, called as ``TrainingProgress``) instead of this process's terminal: a Ray
    Train worker sends them to the driver (``sigma.ray_train``). Returns the last logged metrics.
    """
    with distributed_run() as distributed:
        return _train(distributed, config, data_dirs, out_dir, resume=resume, tokenizer=tokenizer, stop_at=stop_at,
                      device=device, progress=progress, init_from=init_from, relay=relay)


def _train(
    distributed: Distributed,
    config: TrainConfig,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    resume: bool,
    tokenizer: str | Path | None,
    stop_at: int | None,
    device: str | None,
    progress: bool,
    init_from: str | Path | None,
    relay: Any,
) -> dict[str, Any]:
    device_ = pick_device(device, distributed)
    model_config = config.model_config()
    seq_len = config.sequence_length()
    if seq_len > model_config.max_seq_len:
        raise ValueError(f"seq_len {seq_len} exceeds the model's max_seq_len {model_config.max_seq_len}")
    data_paths = [Path(d) for d in data_dirs]
    if config.data_weights is not None and len(config.data_weights) != len(data_paths):
        raise ValueError(f"{len(config.data_weights)} data weights for {len(data_paths)} data folders")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if not (distributed.is_main and progress):
            return
        if relay:
            relay.print(message)
        else:
            print(message, flush=True)

    checkpoint = None
    if resume and find_checkpoint(out) is None:
        say(f"no checkpoint in {out}: starting from step 0")
    if find_checkpoint(out) is not None:
        if not resume:
            raise FileExistsError(f"{out} already has checkpoints: pass --resume to continue, or choose another --out")
        checkpoint = read_checkpoint(out)
        say(f"resuming from {checkpoint.path} (step {checkpoint.step})")
        _check_resumable(checkpoint.state, config, distributed)
    initial = None
    if checkpoint is None and init_from is not None:
        initial = read_checkpoint(init_from)
        if ModelConfig.from_dict(initial.state["model_config"]) != model_config:
            raise ValueError(f"cannot start from {initial.path}: its model differs from this run's")
        say(f"starting from the weights of {initial.path} (step {initial.step})")
    weights_from = checkpoint or initial

    tokenizer_file = _resolve_tokenizer(
        tokenizer, weights_from.path / TOKENIZER_FILE if weights_from else None, data_paths, out,
        model_config.vocab_size, distributed, say,
    )
    tok = load_tokenizer(tokenizer_file)
    tokenizer_json = Path(tokenizer_file).read_text()
    settings_file = weights_from.path / "tokenizer_config.json" if weights_from else None
    carried = {settings_file.name: settings_file.read_text()} if settings_file and settings_file.exists() else {}
    if tok.get_vocab_size() > model_config.vocab_size:
        raise VocabularyError(
            f"{tokenizer_file} has {tok.get_vocab_size():,} tokens, more than the model's vocab_size "
            f"{model_config.vocab_size:,}: train the tokenizer with --vocab-size {model_config.vocab_size} "
            f"or use a config whose model.vocab_size is at least {tok.get_vocab_size():,}")
    eos_id = end_of_text_id(tok)

    if device_.type == "cuda":
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(config.seed)
    model = Transformer(model_config).to(device_)
    if weights_from:
        load_weights(weights_from, model)
    model.loss_chunk, model.activation_checkpointing = config.loss_chunk, config.activation_checkpointing
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device_.type == "cuda")
    compile_model = config.compile if config.compile is not None else device_.type == "cuda"
    if device_.type == "cuda":  # the kernel as training will run it, compiled or not
        kernel = torch.compile(sdpa_attention) if compile_model else sdpa_attention
        check_attention_kernel(model_config, device_, torch.bfloat16 if use_bf16 else torch.float32, kernel=kernel)
    train_model: nn.Module = model
    sharded = distributed.enabled and config.parallel == "fsdp"
    if distributed.enabled:  # before the optimizer: FSDP replaces the parameters by their shards
        train_model = parallelize(model, config.parallel, device_)
    optimizer = build_optimizer(
        model, config.lr, config.weight_decay, config.betas, config.adam_eps, fused=device_.type == "cuda"
    )
    full = FullShards(model, optimizer, lambda: Transformer(model_config)) if sharded else None
    if checkpoint:
        load_training_state(checkpoint, full or optimizer, device_)
    if config.ema_decay and sharded:
        raise ValueError("ema_decay is not supported with parallel: fsdp")
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    if ema is not None and checkpoint and (checkpoint.path / EMA_FILE).exists():
        ema.load(checkpoint.path)
    if compile_model:  # after DDP, so that compile splits graphs at DDP's gradient buckets
        train_model = torch.compile(train_model)

    # a token stream folder (an ablation bundle's variant) is read as token ids, with no held-out split
    shard_sets = [ShardSet.open(p) for p in data_paths if not is_token_stream(p)]
    streams = [
        TokenWindows(p, seq_len, seed=config.seed, rank=distributed.rank, world_size=distributed.world_size,
                     vocab_size=model_config.vocab_size) if is_token_stream(p) else
        SequenceStream(
            ShardSet.open(p), tok, seq_len, split=TRAIN, held_out_fraction=config.held_out_fraction, seed=config.seed,
            rank=distributed.rank, world_size=distributed.world_size, lanes=config.lanes,
        )
        for p in data_paths
    ]
    mixture = DataMixture(streams, config.data_weights)
    if checkpoint:
        mixture.load_state_dict(checkpoint.state["data"][distributed.rank])
    held_out = _held_out_sets(shard_sets, tok, seq_len, config) if config.held_out_fraction > 0 and shard_sets else []

    autocast = torch.autocast(device_.type, dtype=torch.bfloat16, enabled=use_bf16)
    doc_eos = eos_id if config.doc_mask else None
    start_step = checkpoint.step if checkpoint else 0
    tokens_seen = checkpoint.state["tokens"] if checkpoint else 0
    tokens_per_step = config.batch_size * seq_len * config.grad_accum * distributed.world_size
    flops_per_token = training_flops_per_token(model_config, seq_len)
    peak = peak_flops(torch.cuda.get_device_name(device_)) if device_.type == "cuda" else None
    last_step = min(config.max_steps, stop_at) if stop_at is not None else config.max_steps

    metrics = MetricsLog(out, resume_step=start_step if checkpoint else None) if distributed.is_main else None
    record: dict[str, Any] = {}

    def log(values: dict[str, Any]) -> None:
        record.update(values)
        if metrics is not None:
            metrics.write(values)

    def run_eval(step: int) -> None:
        if held_out:
            log({"step": step, **evaluate(model, held_out, config.batch_size, device_, autocast, doc_eos, distributed, sharded)})

    def save(step: int) -> None:
        data_states = [mixture.state_dict()]
        if distributed.enabled:
            data_states = [None] * distributed.world_size
            dist.all_gather_object(data_states, mixture.state_dict())
        weights = full.gather() if full else model  # gathering the shards takes every rank
        if distributed.is_main:
            state = {
                "step": step, "tokens": tokens_seen, "world_size": distributed.world_size, "data": data_states,
                "data_dirs": [str(p) for p in data_paths], "model_config": model_config.to_dict(),
                "train_config": config.to_dict(),
                "init_from": str(initial.path) if initial else (checkpoint.state.get("init_from") if checkpoint else None),
            }
            save_checkpoint(out, weights, full or optimizer, state, tokenizer_json, keep=config.keep_checkpoints,
                            extra_files=carried, extra_models={EMA_FILE: ema.module} if ema is not None else None)
        if distributed.enabled:
            dist.barrier()

    say(
        f"{model_config.attention_kind} model, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{tokens_per_step:,} tokens/step on {distributed.world_size} x {device_}"
    )
    if not checkpoint:
        run_eval(0)
    step = start_step
    model.train()
    progress_bar = relay.progress if relay else TrainingProgress
    with progress_bar(config.max_steps, start_step, enabled=progress and distributed.is_main) as bar:
        window_start, window_steps = time.perf_counter(), 0
        while step < last_step:
            lr = learning_rate(
                step, lr=config.lr, max_steps=config.max_steps, warmup_steps=config.warmup_steps,
                min_lr_ratio=config.min_lr_ratio, schedule=config.schedule, decay_fraction=config.decay_fraction,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device_)
            for micro in range(config.grad_accum):
                batch = mixture.next_batch(config.batch_size)
                if device_.type == "cuda":  # tokenizing the next batch overlaps this copy and the GPU's work
                    batch = batch.pin_memory()
                batch = batch.to(device_, non_blocking=True)
                inputs, targets = batch[:, :-1], batch[:, 1:]
                last_micro = micro == config.grad_accum - 1
                with gradient_sync(train_model, last_micro):
                    with autocast:
                        loss = train_model(inputs, targets, **_document_kwargs(inputs, doc_eos))
                    (loss / config.grad_accum).backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
            step += 1
            tokens_seen += tokens_per_step
            window_steps += 1

            if step % config.log_every == 0 or step == last_step:
                loss_mean = loss_sum / config.grad_accum
                if distributed.enabled:  # gloo has no AVG
                    dist.all_reduce(loss_mean)
                    loss_mean /= distributed.world_size
                loss_value = loss_mean.item()
                elapsed = time.perf_counter() - window_start
                tokens_per_s = window_steps * tokens_per_step / elapsed
                mfu = flops_per_token * tokens_per_s / (peak * distributed.world_size) if peak else None
                log({
                    "step": step, "loss": loss_value, "lr": lr, "grad_norm": scalar(grad_norm),
                    "tokens": tokens_seen, "tokens_per_s": tokens_per_s, **({"mfu": mfu} if mfu else {}),
                })
                bar.update(step, loss_value, tokens_per_s, mfu)
                window_start, window_steps = time.perf_counter(), 0
            else:
                bar.update(step)
            paused = time.perf_counter()
            if step % config.eval_every == 0 or step == config.max_steps:
                run_eval(step)
            if step % config.save_every == 0 or step == last_step:
                save(step)
            window_start += time.perf_counter() - paused  # eval and saving are not training speed

    if metrics is not None:
        metrics.close()
    if distributed.is_main and progress:
        summary = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k in ("loss", "eval_loss", "eval_ppl"))
        say(f"step {step}: {summary}; checkpoint in {find_checkpoint(out)}")
    return record
