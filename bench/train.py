"""Training throughput of Sigma presets against their GQA baselines, measured in the same run.

For each preset: bf16 autocast, torch.compile, fused AdamW, gradient clipping, one optimizer step
per batch of random tokens (data loading is not timed), at T=2048 by default. Reports step time,
tokens/s, MFU (6N + 6 L n_q (d_qk + d_v) T FLOPs per token against the GPU's dense bf16 peak,
989 TFLOP/s on an H100 or H200), peak memory, and each DiffQKV preset's step time relative to its
GQA baseline; the table comes last.

    python bench/train.py                     # sigma-125m, sigma-1b and their GQA baselines
    python bench/train.py --find-max-batch    # timed at the largest power-of-two batch that fits
    python bench/train.py --presets sigma-1.5b sigma-1.5b-gqa --loss-chunk 8192 --find-max-batch
    python bench/train.py --smoke             # sigma-tiny on the CPU for two steps

``--compile blocks`` compiles each block once (all blocks of a model share the graph) instead of
the whole model: a fraction of the compile time, for runs on a short device lease.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sigma.attention import check_attention_kernel, sdpa_attention  # noqa: E402
from sigma.config import PRESETS, ModelConfig  # noqa: E402
from sigma.flops import matmul_parameters, peak_flops, training_flops_per_token  # noqa: E402
from sigma.model import Transformer  # noqa: E402
from sigma.optimizer import build_optimizer  # noqa: E402

DEFAULT_BATCH = {"sigma-tiny": 2, "sigma-125m": 16, "sigma-1b": 8, "sigma-1.5b": 4}


def default_batch(preset: str) -> int:
    return DEFAULT_BATCH[preset.removesuffix("-gqa").removesuffix("-mha")]


COMPILE = ("model", "blocks", "none")


def measure(
    config: ModelConfig, batch: int, seq_len: int, steps: int, warmup: int, device: torch.device,
    compile: str, bf16: bool, loss_chunk: int = 0, activation_checkpointing: bool = False,
) -> dict[str, float]:
    """Time ``steps`` training steps after ``warmup`` untimed ones (which include compilation)."""
    torch.manual_seed(0)
    model = Transformer(config).to(device)
    model.loss_chunk, model.activation_checkpointing = loss_chunk, activation_checkpointing
    optimizer = build_optimizer(model, 3e-4, 0.1, (0.9, 0.95), 1e-8, fused=device.type == "cuda")
    forward = torch.compile(model) if compile == "model" else model
    if compile == "blocks":
        for block in model.layers:
            block.compile()
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> torch.Tensor:
        with autocast:
            loss = forward(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # waits for the GPU
    if device.type == "cuda":
        torch.cuda.synchronize()
    step_time = (time.perf_counter() - start) / steps
    peak_memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    del model, optimizer, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"step_s": step_time, "tokens_per_s": batch * seq_len / step_time, "peak_memory_bytes": peak_memory}


def largest_batch(
    config: ModelConfig, seq_len: int, device: torch.device, bf16: bool, limit: int = 1024, **options
) -> int:
    """The largest power-of-two batch whose training step fits in GPU memory, probed uncompiled
    (one step each; compiled code needs no more memory than eager)."""
    fits, batch = 0, 1
    while batch <= limit:
        try:
            measure(config, batch, seq_len, steps=1, warmup=0, device=device, compile="none", bf16=bf16, **options)
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        fits, batch = batch, batch * 2
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["sigma-125m", "sigma-125m-gqa", "sigma-1b", "sigma-1b-gqa"])
    parser.add_argument("--batch", type=int, help="batch size for every preset (default: per preset)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--compile", choices=COMPILE, default="model", help="what torch.compile compiles (default: the model)")
    parser.add_argument("--loss-chunk", type=int, default=0, help="tokens per chunk of the loss (0: the full logits)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute block activations in backward")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU (default: known GPUs, e.g. H100 989)")
    parser.add_argument("--find-max-batch", action="store_true", help="time each preset at the largest batch that fits")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="sigma-tiny and its GQA baseline on the CPU, T=128, 2 steps")
    args = parser.parse_args(argv)

    if args.smoke:
        device = torch.device("cpu")
        args.presets, args.seq_len, args.steps, args.warmup = ["sigma-tiny", "sigma-tiny-gqa"], 128, 2, 1
        args.compile, args.fp32 = "none", True
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compile_, bf16 = args.compile, not args.fp32
    options = {"loss_chunk": args.loss_chunk, "activation_checkpointing": args.activation_checkpointing}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_flops(device_name) if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    print(f"device {device_name}, torch {torch.__version__}, T={args.seq_len}, bf16={bf16}, compile={compile_}, "
          f"loss chunk {args.loss_chunk or '-'}, activation checkpointing {args.activation_checkpointing}", flush=True)

    results = []
    for preset in args.presets:
        config = PRESETS[preset]
        if device.type == "cuda":
            kernel = torch.compile(sdpa_attention) if compile_ != "none" else sdpa_attention
            check_attention_kernel(config, device, torch.bfloat16 if bf16 else torch.float32, kernel=kernel)
        batch = args.batch or default_batch(preset)
        result = {"preset": preset, "attention": config.attention_kind, "seq_len": args.seq_len,
                  "n_params_6n": matmul_parameters(config), **options}
        if args.find_max_batch and device.type == "cuda":
            batch = result["max_batch"] = largest_batch(config, args.seq_len, device, bf16, **options)
            if not batch:
                print(f"{preset}: not even batch 1 fits", flush=True)
                continue
        print(f"{preset}: batch {batch} ...", flush=True)
        result["batch"] = batch
        result.update(measure(config, batch, args.seq_len, args.steps, args.warmup, device, compile_, bf16, **options))
        if compile_ != "none":
            torch._dynamo.reset()  # each preset compiles afresh, within dynamo's recompile limit
        flops_per_s = training_flops_per_token(config, args.seq_len) * result["tokens_per_s"]
        result["tflops"] = flops_per_s / 1e12
        result["mfu"] = flops_per_s / peak if peak else None
        results.append(result)

    by_preset = {r["preset"]: r for r in results}
    for r in results:
        baseline = by_preset.get(f"{r['preset']}-gqa")
        r["step_vs_gqa"] = r["step_s"] / baseline["step_s"] if baseline else None

    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "results": results}, indent=1))
    print_table(results, device_name)
    return 0


def print_table(results: list[dict], device_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training throughput on {device_name}")
    for column in ("preset", "attention", "batch x T", "step ms", "tokens/s", "TFLOP/s", "MFU", "peak mem", "max batch", "step vs GQA"):
        table.add_column(column, justify="left" if column in ("preset", "attention") else "right")
    for r in results:
        memory = r["peak_memory_bytes"]
        table.add_row(
            r["preset"], r["attention"], f"{r['batch']} x {r['seq_len']}", f"{1000 * r['step_s']:.1f}",
            f"{r['tokens_per_s']:,.0f}", f"{r['tflops']:.1f}", f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-",
            f"{memory / 2**30:.1f} GiB" if memory == memory else "-", str(r.get("max_batch", "-")),
            f"{r['step_vs_gqa']:.3f}" if r["step_vs_gqa"] else "-",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
