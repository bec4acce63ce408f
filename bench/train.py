"""Training throughput of Sigma presets against their GQA baselines, measured in the same run.

For each preset: bf16 autocast, torch.compile, fused AdamW, gradient clipping, one optimizer step
per batch of random tokens (data loading is not timed), at T=2048 by default. Reports step time,
tokens/s, MFU (6N + 6 L n_q (d_qk + d_v) T FLOPs per token against the GPU's dense bf16 peak,
989 TFLOP/s on an H100 or H200), peak memory, and each DiffQKV preset's step time relative to its
GQA baseline. Each preset's row is appended to ``--rows`` (JSON lines) the moment it is measured;
a preset that fails (out of memory, a compile error) is a row with its error, and the next one runs.

    python bench/train.py --presets sigma-125m:64 sigma-1b:16     # preset:batch, T=2048
    python bench/train.py --presets sigma-1.5b:8:8192 --compile blocks    # preset:batch:loss chunk
    python bench/train.py --plan     # no GPU: FLOPs, the loss path's bytes, memory and the batch that fits
    python bench/train.py --smoke    # sigma-tiny on the CPU for two steps

``--compile blocks`` compiles each block once (all blocks of a model share the graph) and the head
and loss apart (``Transformer.loss``; the chunked loss stays eager), instead of the whole model: a
fraction of the compile time, for runs on a short device lease. The trainer compiles the whole
model; both fuse the loss, which eagerly moves several times the logits' bytes.
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

from bench.row_log import RowLog  # noqa: E402
from sigma.attention import check_attention_kernel  # noqa: E402
from sigma.config import PRESETS, ModelConfig  # noqa: E402
from sigma.flops import count_parameters, matmul_parameters, peak_flops, training_flops_per_token  # noqa: E402
from sigma.model import Transformer  # noqa: E402
from sigma.optimizer import build_optimizer  # noqa: E402

DEFAULT_BATCH = {"sigma-tiny": 2, "sigma-125m": 64, "sigma-1b": 16, "sigma-1.5b": 8}
COMPILE = ("model", "blocks", "none")
H200_BYTES = 139 * 2**30  # what torch sees of an H200's 141 GB
MATMUL_RATE = 790e12  # bf16 matrix product measured on an H200 here (8192^3, random data): MFU's practical ceiling
COPY_RATE = 4.3e12  # device-to-device copy, bytes read + written, measured on an H200 here


def default_batch(preset: str) -> int:
    return DEFAULT_BATCH[preset.removesuffix("-gqa").removesuffix("-mha")]


def parse_preset(spec: str, loss_chunk: int = 0) -> tuple[str, int, int]:
    """``sigma-1b``, ``sigma-1b:16`` (preset:batch) or ``sigma-1.5b:8:8192`` (and the loss's chunk;
    else ``loss_chunk``) -> (preset, batch, loss chunk)."""
    name, batch, chunk = (spec.split(":") + ["", ""])[:3]
    try:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        return name, int(batch) if batch else default_batch(name), int(chunk) if chunk else loss_chunk
    except ValueError as error:
        print(f"error: {spec!r}: {error} (write preset[:batch[:loss_chunk]])", file=sys.stderr)
        raise SystemExit(2) from None


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
        if not loss_chunk:  # the plain loss moves the whole logits several times unless fused
            model.loss = torch.compile(model.loss)
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

    started = time.perf_counter()
    for _ in range(warmup):
        step().item()
    warmup_s = time.perf_counter() - started
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
    peak_memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del model, optimizer, forward
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"step_s": step_time, "tokens_per_s": batch * seq_len / step_time, "peak_memory_bytes": peak_memory,
            "warmup_s": warmup_s, "loss": loss.item()}


# ------------------------------------------------------------------------------ what needs no GPU


def saved_bytes_per_token(config: ModelConfig, loss_chunk: int = 0) -> tuple[float, float]:
    """Bytes the autograd graph keeps for the backward pass, per token: (per layer, the rest),
    measured on the CPU under bf16 autocast by counting every saved tensor's storage once, at two
    sequence lengths and two depths, so that what does not grow with tokens (the bf16 copies of the
    weights) cancels. Attention saves what a fused GPU kernel saves (q, k, v, the output, a float32
    log-sum-exp), not what the CPU's kernel keeps."""
    import sigma.attention as attention

    class FusedLike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, mask):
            with torch.no_grad():
                out = plain(q, k, v, mask)
            ctx.save_for_backward(q, k, v, out, torch.empty(q.shape[:-1], dtype=torch.float32))
            return out

    torch.manual_seed(0)
    model = Transformer(config.replace(n_layers=2))  # one model: its first layer alone is the 1-layer model
    model.loss_chunk = loss_chunk
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    both = model.layers

    def count(layers: int, seq_len: int) -> int:
        storages: dict[int, int] = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        model.layers = both[:layers]
        tokens = torch.randint(0, config.vocab_size, (1, seq_len + 1))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
            model(tokens[:, :-1], tokens[:, 1:])
        return sum(n for ptr, n in storages.items() if ptr not in params)

    plain = attention.sdpa_attention
    attention.sdpa_attention = lambda q, k, v, mask=None: FusedLike.apply(q, k, v, mask)
    try:
        one = (count(1, 128) - count(1, 64)) / 64
        two = (count(2, 128) - count(2, 64)) / 64
    finally:
        attention.sdpa_attention = plain
        model.layers = both
    return two - one, 2 * one - two


def memory_plan(config: ModelConfig, batch: int, seq_len: int, loss_chunk: int, per_layer: float, rest: float) -> dict:
    """Peak training memory by arithmetic: parameters, gradients and AdamW's moments in float32
    and autocast's bf16 copy of the weights (18 bytes a parameter), the saved activations, and the
    working set of the loss (the logits of one chunk, or of the whole batch, in bf16 and float32
    with their gradient)."""
    params = count_parameters(config).total
    tokens = batch * seq_len
    logits = min(tokens, loss_chunk or tokens) * config.vocab_size * (2 + 4 + 4)
    fixed = 18 * params
    activations = tokens * (config.n_layers * per_layer + rest)
    return {"params": params, "fixed_bytes": fixed, "activation_bytes": activations, "loss_bytes": logits,
            "peak_bytes": fixed + activations + logits}


def largest_batch_by_arithmetic(config: ModelConfig, seq_len: int, loss_chunk: int, per_layer: float, rest: float,
                                memory: int = H200_BYTES, headroom: float = 0.8) -> int:
    """The largest power-of-two batch whose planned peak stays under ``headroom`` of ``memory``
    (the rest for the allocator's fragmentation, the backward pass's transient buffers, cuBLAS
    and compile workspaces)."""
    batch = 1
    while memory_plan(config, 2 * batch, seq_len, loss_chunk, per_layer, rest)["peak_bytes"] <= headroom * memory:
        batch *= 2
    return batch if memory_plan(config, batch, seq_len, loss_chunk, per_layer, rest)["peak_bytes"] <= headroom * memory else 0


def loss_traffic(config: ModelConfig, tokens: int, compiled: bool) -> float:
    """Bytes the plain loss moves beyond its matmuls, forward and backward, at ``tokens``: eagerly
    the bf16 logits are cast to float32, log-softmaxed, the gradient scattered into zeros, the
    log-softmax backward read and written, and cast back (about 10 float32 passes); fused, the bf16
    logits are read twice and their bf16 gradient written once."""
    logits = tokens * config.vocab_size
    return logits * (2 + 2 + 2) if compiled else logits * (2 + 2 * 4 + 2 * 4 + 4 + 3 * 4 + 4 + 2 * 4 + 4 + 2)


def plan_rows(presets: list[tuple[str, int, int]], seq_len: int) -> list[dict]:
    rows = []
    for name, batch, chunk in presets:
        config = PRESETS[name]
        per_layer, rest = saved_bytes_per_token(config, loss_chunk=32 if chunk else 0)
        tokens = batch * seq_len
        flops = training_flops_per_token(config, seq_len) * tokens
        head = 6 * config.vocab_size * config.d_model * tokens
        attention = 6 * config.n_layers * config.n_q_heads * (config.d_qk_head + config.d_v_head) * seq_len * tokens
        step_at_goal = flops / (0.55 * 989e12)
        rows.append({
            "preset": name, "batch": batch, "seq_len": seq_len, "loss_chunk": chunk, "n_params_6n": matmul_parameters(config),
            "flops_per_step": flops, "head_share": head / flops, "attention_share": attention / flops,
            "step_s_at_100": flops / 989e12, "mfu_ceiling": MATMUL_RATE / 989e12,
            "loss_eager_s": loss_traffic(config, tokens, False) / COPY_RATE if not chunk else None,
            "loss_fused_s": loss_traffic(config, tokens, True) / COPY_RATE if not chunk else None,
            "step_s_at_55": step_at_goal, "saved_per_token_layer": per_layer, "saved_per_token_rest": rest,
            **memory_plan(config, batch, seq_len, chunk, per_layer, rest),
            "largest_batch": largest_batch_by_arithmetic(config, seq_len, chunk, per_layer, rest),
        })
    return rows


def print_plan(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="one training step by arithmetic (no GPU): FLOPs, the plain loss's extra bytes eager and fused "
                        "at 4.3 TB/s, memory on an H200 (139 GiB) and the largest power-of-two batch under 80% of it")
    for column in ("preset", "batch x T", "TFLOP/step", "head", "attention", "step ms at 100% / 55% MFU",
                   "loss ms eager / fused", "saved B/token/layer", "peak GiB", "largest batch"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for r in rows:
        loss = f"{1e3 * r['loss_eager_s']:.1f} / {1e3 * r['loss_fused_s']:.1f}" if r["loss_eager_s"] else f"chunked {r['loss_chunk']}"
        table.add_row(r["preset"], f"{r['batch']} x {r['seq_len']}", f"{r['flops_per_step'] / 1e12:.1f}",
                      f"{100 * r['head_share']:.1f}%", f"{100 * r['attention_share']:.1f}%",
                      f"{1e3 * r['step_s_at_100']:.0f} / {1e3 * r['step_s_at_55']:.0f}", loss,
                      f"{r['saved_per_token_layer']:,.0f}", f"{r['peak_bytes'] / 2**30:.1f}", str(r["largest_batch"]))
    Console(width=200).print(table)


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["sigma-125m", "sigma-125m-gqa", "sigma-1b", "sigma-1b-gqa"],
                        help="presets, each optionally with its batch and loss chunk: sigma-1b:16, sigma-1.5b:8:8192 "
                             "(default batches: 125m 64, 1b 16, 1.5b 8)")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, autotuning)")
    parser.add_argument("--compile", choices=COMPILE, default="blocks", help="what torch.compile compiles (default: the blocks)")
    parser.add_argument("--loss-chunk", type=int, default=0, help="tokens per chunk of the loss where a preset names none "
                                                                  "(0: the full logits)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute block activations in backward")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU (default: known GPUs, e.g. H100 989)")
    parser.add_argument("--rows", type=Path, help="append every row to this JSON-lines file as it is measured")
    parser.add_argument("--json", type=Path, help="also write the results here at the end, as one JSON document")
    parser.add_argument("--plan", action="store_true", help="no GPU: FLOPs, memory and the batch that fits, by arithmetic")
    parser.add_argument("--smoke", action="store_true", help="sigma-tiny and its GQA baseline on the CPU, T=128, 2 steps")
    args = parser.parse_args(argv)
    presets = [parse_preset(spec, args.loss_chunk) for spec in args.presets]
    if args.plan:
        print_plan(plan_rows(presets, args.seq_len))
        return 0

    if args.smoke:
        device = torch.device("cpu")
        tiny = [(name.replace("1.5b", "tiny").replace("125m", "tiny").replace("1b", "tiny"), 2, chunk and 64)
                for name, _, chunk in presets]
        presets = list(dict.fromkeys(tiny))  # each tiny stand-in once
        args.seq_len, args.steps, args.warmup, args.compile, args.fp32 = 128, 2, 1, "none", True
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = not args.fp32
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_flops(device_name) if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    log = RowLog(args.rows, "train")
    log.write("device", device=device_name, torch=torch.__version__, seq_len=args.seq_len, bf16=bf16, compile=args.compile,
              steps=args.steps, warmup=args.warmup, activation_checkpointing=args.activation_checkpointing)
    for preset, batch, chunk in presets:
        config = PRESETS[preset]
        options = {"loss_chunk": chunk, "activation_checkpointing": args.activation_checkpointing}
        row = {"preset": preset, "attention": config.attention_kind, "batch": batch, "seq_len": args.seq_len,
               "n_params_6n": matmul_parameters(config), **options}
        with log.guard("train", **row):
            if device.type == "cuda":  # the head maps of the kernel training runs, checked eagerly
                check_attention_kernel(config, device, torch.bfloat16 if bf16 else torch.float32)
            print(f"{preset}: batch {batch} ...", flush=True)
            row.update(measure(config, batch, args.seq_len, args.steps, args.warmup, device, args.compile, bf16, **options))
            flops_per_s = training_flops_per_token(config, args.seq_len) * row["tokens_per_s"]
            row.update(tflops=flops_per_s / 1e12, mfu=flops_per_s / peak if peak else None)
            log.write("train", **row)
        if args.compile != "none":
            torch._dynamo.reset()  # each preset compiles afresh, within dynamo's recompile limit
    results = [r for r in log.rows if r["kind"] == "train"]
    if args.json:
        ratios = step_vs_gqa(results)
        measured = [{**r, "step_vs_gqa": ratios.get(r["preset"])} for r in results if "step_s" in r]
        args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__, "results": measured}, indent=1))
    print_table(results, device_name)
    return 0


def step_vs_gqa(rows: list[dict]) -> dict[str, float]:
    """Each DiffQKV preset's step time over its GQA baseline's, where both were measured."""
    steps = {r["preset"]: r["step_s"] for r in rows if r.get("kind") == "train" and "step_s" in r}
    return {name: step / steps[f"{name}-gqa"] for name, step in steps.items() if f"{name}-gqa" in steps}


def print_table(rows: list[dict], device_name: str) -> None:
    from rich.console import Console
    from rich.table import Table

    ratios = step_vs_gqa(rows)
    table = Table(title=f"training throughput on {device_name}")
    for column in ("preset", "attention", "batch x T", "step ms", "tokens/s", "TFLOP/s", "MFU", "peak mem", "warmup s",
                   "step vs GQA"):
        table.add_column(column, justify="left" if column in ("preset", "attention") else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["preset"], r["attention"], f"{r['batch']} x {r['seq_len']}", f"ERROR {r['error'][:80]}")
            continue
        memory = r["peak_memory_bytes"]
        table.add_row(
            r["preset"], r["attention"], f"{r['batch']} x {r['seq_len']}", f"{1000 * r['step_s']:.1f}",
            f"{r['tokens_per_s']:,.0f}", f"{r['tflops']:.1f}", f"{100 * r['mfu']:.1f}%" if r["mfu"] else "-",
            f"{memory / 2**30:.1f} GiB" if memory else "-", f"{r['warmup_s']:.0f}",
            f"{ratios[r['preset']]:.3f}" if r["preset"] in ratios else "-",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
