"""Decode speed of DiffQKV against GQA 16/16: the paper's efficiency claim, measured in one run.

Sigma (arXiv 2501.13629, section 3) times Sigma-1.5B (26 layers, 32 Q / 4 K / 16 V heads of dim
64, augmented Q 3072) against the same model with GQA 16/16 on one H100: 25.31% less decode-
kernel time (KET) at a 32K prefix and 33.36% less attention-layer time (CEET) at 64K outputs;
the bytes allow 37.5%. This script measures, with random weights and random cache contents
(speed does not depend on them), bf16, for prefixes 2K..64K and batches 1 and 8:

- KET: one decode-attention call per layer over that layer's own cache (26 caches, so nothing is
  served from L2 that a real step would read from memory), per layer, for: the Triton split-KV
  kernel, the same with selective V (top-k V rows per query head), the concat-V view over SDPA;
  and for GQA 16/16: SDPA on its fastest backend (flash, efficient, cuDNN, each tried) and the
  Triton kernel. Achieved bandwidth = cache bytes / KET, beside the GPU's measured copy rate.
- CEET: the attention layer of a decode step (Q projection and augmented Q, K and V projections,
  RoPE, the cache update, attention, output projection), per layer.
- decode tokens/s of the whole model (CUDA graph of the full step, greedy).
- KV-cache bytes per token and the largest batch that fits at 32K, verified by decoding a step.

Before timing, it checks the kernels against a float64 reference and that greedy generation with
the cache equals generation by full recompute, token for token (float32). Every CUDA timing is a
CUDA graph replayed many times, the median of five runs. The tables come last.

    python bench/decode.py                     # the full run on a GPU (under 10 minutes on an H100)
    python bench/decode.py --smoke             # tiny shapes on the CPU: the code paths, not speed
    python bench/decode.py --quality RUN --data DIR [DIR ...]   # selective V on a trained checkpoint
    python bench/decode.py --plan              # exact bytes per step and launch grids; no GPU needed
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sigma.config import PRESETS, ModelConfig  # noqa: E402
from sigma.kernels.decode import (  # noqa: E402
    concat_v_attention, decode_attention, reference_decode_attention, torch_decode_attention, triton_available,
)
from sigma.kv_cache import KVCache, kv_bytes_per_token, kv_bytes_per_token_per_layer, max_batch_size  # noqa: E402

PAPER = {"ket_cut_32k": 25.31, "ceet_cut_64k": 33.36, "bytes_cut": 37.5}
TOP_K = 100
GROUPS = 5  # timing groups; the median is reported


# --------------------------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], object], device: torch.device, reps: int, groups: int | None = None) -> float:
    """Seconds per call of ``fn``: on CUDA a captured graph replayed ``reps`` times, median of groups."""
    groups = groups or GROUPS
    if device.type != "cuda":
        fn()
        samples = []
        for _ in range(groups):
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            samples.append((time.perf_counter() - start) / reps)
        return statistics.median(samples)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    samples = []
    for _ in range(groups):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1000 / reps)
    del graph
    return statistics.median(samples)


def copy_bandwidth(device: torch.device) -> float | None:
    """Bytes/s read plus written by a device-to-device copy of 2 GiB."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**30, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    seconds = time_call(lambda: dst.copy_(src), device, reps=20)
    del src, dst
    return 2 * 2**31 / seconds


# ----------------------------------------------------------------------------------------- the models


def paper_models(smoke: bool, max_len: int) -> dict[str, ModelConfig]:
    sigma, gqa = PRESETS["sigma-1.5b"], PRESETS["sigma-1.5b-gqa"]
    if smoke:  # the paper's heads, on a model a CPU runs in seconds
        small = dict(n_layers=2, d_model=256, d_ffn=512, vocab_size=512)
        sigma, gqa = sigma.replace(**small, q_aug_dim=384), gqa.replace(**small)
    return {"DiffQKV 32/4/16": sigma.replace(max_seq_len=max_len), "GQA 16/16": gqa.replace(max_seq_len=max_len)}


def build_model(config: ModelConfig, device: torch.device, dtype: torch.dtype):
    from sigma.generate import to_inference
    from sigma.model import Transformer

    with torch.device(device):
        model = Transformer(config)
    return to_inference(model, device, dtype)


def random_cache(config: ModelConfig, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> KVCache:
    cache = KVCache(config, batch, length, device, dtype)
    cache.k.normal_()
    cache.v.normal_()
    cache.lengths.fill_(length)
    return cache


# ------------------------------------------------------------------------------------------- checks


def check_kernels(device: torch.device, backends: list[str]) -> list[dict]:
    """Every decode backend against the float64 reference: several layouts, ragged lengths, bf16."""
    layouts = [(32, 4, 16, 64, 64), (32, 16, 16, 64, 64), (4, 1, 2, 16, 16), (8, 4, 2, 16, 16), (6, 1, 3, 16, 32), (8, 8, 8, 64, 64)]
    lengths = torch.tensor([700, 1, 333], dtype=torch.int32, device=device)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n_q, n_k, n_v, d_qk, d_v in layouts:
        r = n_v // n_k if n_v % n_k == 0 else 1
        q = (torch.randn(3, n_q, d_qk, generator=gen) * 2).to(device, torch.bfloat16)
        k = torch.randn(3, n_k, 700, d_qk, generator=gen).to(device, torch.bfloat16)
        v = torch.randn(3, n_v // r, 700, r * d_v, generator=gen).to(device, torch.bfloat16)
        for backend, top_k in itertools.product(backends, (None, TOP_K)):
            if backend == "concat-v" and (top_k or r != n_v // n_k or n_v % n_k):
                continue
            want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), n_v, top_k)
            got = decode_attention(q, k, v, lengths, n_v, top_k=top_k, backend=backend).double().cpu()
            error = ((got - want).abs().max() / want.abs().max()).item()
            rows.append({"layout": f"{n_q}/{n_k}/{n_v} d{d_qk}/{d_v}", "backend": backend, "top_k": top_k, "error": error})
            if not error < 2e-2:
                raise RuntimeError(f"{backend} (top_k={top_k}) disagrees with the float64 reference for {rows[-1]['layout']}: {error:.3g}")
    return rows


def check_greedy(config: ModelConfig, device: torch.device, backends: list[str], new_tokens: int) -> list[dict]:
    """Greedy with the cache against full recompute, float32, prompts of different lengths."""
    from sigma.generate import Engine, greedy_by_recompute

    config = config.replace(init_std=0.1, max_seq_len=1024)
    model = build_model(config, device, torch.float32)
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, config.vocab_size, (n,), generator=gen).tolist() for n in (300, 37, 1)]
    want = [greedy_by_recompute(model, p, new_tokens) for p in prompts]
    rows = []
    for backend in backends:
        engine = Engine(model, attention=backend, cuda_graphs=device.type == "cuda")
        got = [ids for ids, _ in engine.generate_ids(prompts, new_tokens)]
        equal = sum(a == b for x, y in zip(got, want) for a, b in zip(x, y))
        rows.append({"backend": backend, "tokens_equal": equal, "tokens": sum(map(len, want))})
        if got != want:
            raise RuntimeError(f"greedy with the cache ({backend}) differs from full recompute: {rows[-1]}")
    del model
    return rows


# ------------------------------------------------------------------------------------------- kernels


def sdpa_backends(device: torch.device) -> dict[str, list]:
    from torch.nn.attention import SDPBackend

    if device.type != "cuda":
        return {"math": [SDPBackend.MATH]}
    return {"flash": [SDPBackend.FLASH_ATTENTION], "efficient": [SDPBackend.EFFICIENT_ATTENTION],
            "cudnn": [SDPBackend.CUDNN_ATTENTION]}


def fastest_sdpa(call: Callable[[], object], device: torch.device, reps: int) -> tuple[float, str]:
    from torch.nn.attention import sdpa_kernel

    best = (math.inf, "-")
    for name, backends in sdpa_backends(device).items():
        def run(backends=backends):
            with sdpa_kernel(backends):
                call()
        try:
            seconds = time_call(run, device, reps)
        except RuntimeError:  # this backend refuses the shape
            continue
        best = min(best, (seconds, name))
    return best


def tune_triton(kind: str, q, k, v, lengths, n_v: int, device: torch.device, top_k: int = TOP_K) -> None:
    """Pick the fastest launch configuration for this shape on one layer's cache."""
    from sigma.kernels import triton_decode as td

    if device.type != "cuda":
        return
    layout = td.layout_of(q, k, v, n_v)
    key = td.tuning_key(kind, layout, q.size(0), k.size(2))
    if key in td.TUNED:
        return
    best = (math.inf, td.DEFAULT)
    block_ts = (64, 128) if kind == "split" else (64,)  # the K pass's block is the top-k width
    for block_t, warps, stages, waves in itertools.product(block_ts, (4, 8), (2, 3, 4), (2, 4, 8)):
        config = td.LaunchConfig(block_t, warps, stages, waves)
        if kind == "split":
            fn = lambda: td.split_kv_attention(q, k, v, lengths, n_v, config)  # noqa: E731
        else:
            fn = lambda: td.top_k_candidates(q, k, lengths, layout, top_k, config)  # noqa: E731
        try:
            seconds = time_call(fn, device, reps=5, groups=1)
        except Exception:  # noqa: BLE001 - e.g. out of shared memory for this tile
            continue
        best = min(best, (seconds, config), key=lambda x: x[0])
    td.TUNED[key] = best[1]


def measure_kernels(name: str, config: ModelConfig, batch: int, prefix: int, device: torch.device,
                    dtype: torch.dtype, reps: int, use_triton: bool, top_k: int) -> list[dict]:
    """KET per layer for every kernel that applies to this model, over the model's layer count."""
    cache = random_cache(config, batch, prefix, device, dtype)
    n_v, layers = config.n_v_heads, config.n_layers
    q = torch.randn(batch, config.n_q_heads, config.d_qk_head, device=device, dtype=dtype)
    q4 = q.unsqueeze(2)
    per_layer_bytes = batch * prefix * kv_bytes_per_token_per_layer(config, dtype)
    diff = config.n_k_heads != config.n_v_heads
    runs: list[tuple[str, Callable[[], object]]] = []

    if use_triton:
        from sigma.kernels import triton_decode as td

        tune_triton("split", q, cache.k[0], cache.v[0], cache.lengths, n_v, device)
        runs.append(("triton split-KV", lambda: [td.split_kv_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v) for i in range(layers)]))
        if diff:
            tune_triton("scores", q, cache.k[0], cache.v[0], cache.lengths, n_v, device, top_k)
            runs.append((f"triton selective V k={top_k}", lambda: [
                td.selective_v_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, top_k) for i in range(layers)]))
            layout = td.layout_of(q, cache.k[0], cache.v[0], n_v)
            runs.append(("  of which: K pass", lambda: [td.top_k_candidates(q, cache.k[i], cache.lengths, layout, top_k) for i in range(layers)]))
    else:
        runs.append(("torch", lambda: [decode_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, backend="torch") for i in range(layers)]))
        if diff:
            runs.append((f"torch selective V k={top_k}", lambda: [
                decode_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, backend="torch", top_k=top_k) for i in range(layers)]))

    itemsize = torch.empty((), dtype=dtype).element_size()
    k_bytes = batch * prefix * config.n_k_heads * config.d_qk_head * itemsize
    selected_bytes = k_bytes + batch * config.n_q_heads * min(top_k, prefix) * config.d_v_head * itemsize  # at most
    rows = []
    for kernel, fn in runs:
        seconds = time_call(fn, device, reps) / layers
        moved = selected_bytes if "selective" in kernel else k_bytes if "K pass" in kernel else per_layer_bytes
        rows.append({"model": name, "kernel": kernel, "batch": batch, "prefix": prefix, "ket_s": seconds, "bytes": moved})
    if diff:
        call = lambda: [concat_v_attention(q, cache.k[i], cache.v[i], None, n_v) for i in range(layers)]  # noqa: E731
        label = "SDPA concat-V"
    else:
        call = lambda: [F.scaled_dot_product_attention(q4, cache.k[i], cache.v[i], enable_gqa=True) for i in range(layers)]  # noqa: E731
        label = "SDPA"
    seconds, backend = fastest_sdpa(call, device, reps)
    rows.append({"model": name, "kernel": f"{label} ({backend})", "batch": batch, "prefix": prefix,
                 "ket_s": seconds / layers, "bytes": per_layer_bytes})

    if use_triton and device.type == "cuda":  # the tuned launch agrees with the torch path at this shape
        checks = [(None, lambda: td.split_kv_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v))]
        if diff and prefix == 32768:
            checks.append((top_k, lambda: td.selective_v_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v, top_k)))
        for k_rows, kernel in checks:
            want = torch_decode_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v, k_rows).double()
            error = ((kernel().double() - want).abs().max() / want.abs().max()).item()
            rows[0].setdefault("check_errors", []).append(error)
            if not error < 2e-2:
                raise RuntimeError(f"the Triton kernel (top_k={k_rows}) disagrees with the torch path at {batch} x {prefix}: {error:.3g}")
            del want
    del cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------- layer and model


def measure_model(name: str, model, batch: int, prefix: int, device: torch.device, dtype: torch.dtype,
                  reps: int, attention: str, top_k: int | None, steps: int) -> dict:
    """CEET (per layer) and decode tokens/s with the cache holding ``prefix`` random positions."""
    from sigma.generate import Decoder

    config = model.config
    graphs = device.type == "cuda"
    decoder = Decoder(model, batch, prefix + 2 * steps + 8, attention=attention, selective_v=top_k, cuda_graph=graphs)
    cache = decoder.cache
    cache.k.normal_()
    cache.v.normal_()
    cache.lengths.fill_(prefix)
    decoder.host_lengths = [prefix] * batch

    # CEET: each layer's attention on its own cache, the same token, lengths held at the prefix.
    x = torch.randn(batch, 1, config.d_model, device=device, dtype=dtype)
    positions = torch.full((batch, 1), prefix, device=device)
    cos, sin = model.rope_cos[positions].unsqueeze(1), model.rope_sin[positions].unsqueeze(1)
    layers = decoder.layers
    max_length = None if graphs else prefix + 1

    def attention_layers():
        decoder.attention.begin_step(max_length)
        for block, layer_cache in zip(model.layers, layers):
            block.attention(x, cos, sin, None, layer_cache)

    with torch.no_grad():
        ceet = time_call(attention_layers, device, reps) / config.n_layers

        # Decode tokens/s: the captured step, greedy, fed back on the device (no host round trip).
        if graphs:
            def step():
                decoder.graph.replay()
                decoder.tokens.copy_(decoder.static_logits.argmax(-1, keepdim=True))

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            torch.cuda.synchronize()
            step_s = (time.perf_counter() - start) / steps
        else:
            logits = decoder.step(torch.zeros(batch, dtype=torch.long, device=device))
            start = time.perf_counter()
            for _ in range(steps):
                logits = decoder.step(logits.argmax(-1))
            step_s = (time.perf_counter() - start) / steps
    label = attention + (f" selective V k={top_k}" if top_k else "")
    del decoder, cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"model": name, "attention": label, "batch": batch, "prefix": prefix, "ceet_s": ceet,
            "step_s": step_s, "tokens_per_s": batch / step_s}


def largest_batches(models: dict[str, ModelConfig], context: int, device: torch.device, dtype: torch.dtype,
                    attention: str) -> list[dict]:
    """KV bytes per token and the largest batch at ``context``, checked by decoding one step."""
    from sigma.generate import Decoder
    from sigma.kv_cache import weight_bytes

    rows = []
    for name, config in models.items():
        row = {"model": name, "kv_bytes_per_token_layer": kv_bytes_per_token_per_layer(config, dtype),
               "kv_bytes_per_token": kv_bytes_per_token(config, dtype), "weights_bytes": weight_bytes(config, dtype)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
            free, total = torch.cuda.mem_get_info(device)
            memory = free + torch.cuda.memory_allocated(device)
            config = config.replace(max_seq_len=max(config.max_seq_len, context + 8))
            fits = max_batch_size(config, context + 8, memory, dtype, reserve_bytes=2 * 2**30)
            row.update(memory_bytes=memory, max_batch=fits)
            model = build_model(config, device, dtype)
            try:  # decode a step at that batch: the accounting must hold in practice
                decoder = Decoder(model, fits, context + 8, attention=attention)
                decoder.cache.lengths.fill_(context)
                decoder.host_lengths = [context] * fits
                decoder.step(torch.zeros(fits, dtype=torch.long, device=device))
                torch.cuda.synchronize()
                row["verified"] = True
                del decoder
            except torch.OutOfMemoryError:
                row["verified"] = False
            del model
            torch.cuda.empty_cache()
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- what needs no GPU


H100_SMS = 132  # the H100 SXM and the H200 both have 132 SMs


def launch_plan(models: dict[str, ModelConfig], top_k: int, new_tokens: int = 256) -> list[dict]:
    """Exact counts, no GPU: bytes one decode step reads, and the Triton kernels' programs with
    work on a 132-SM GPU, for a cache of ``context + new_tokens`` positions (as the engine sizes it)
    holding ``context`` positions, and holding 1K of a 32K cache; splits sized from the length
    against the earlier rule, splits cut from the capacity."""
    from sigma.kernels import triton_decode as td
    from sigma.kv_cache import weight_bytes

    def capacity_rule(layout, batch, capacity, length, block, min_split=0):
        wanted = math.ceil(td.DEFAULT.waves * H100_SMS / (batch * layout.n_units))
        blocks = math.ceil(capacity / block)
        size = max(math.ceil(blocks / max(1, min(blocks, wanted))) * block, min_split)
        return batch * layout.n_units * math.ceil(length / size)

    rows = []
    for (name, config), batch, (context, capacity) in itertools.product(
        models.items(), (1, 8), ((32768, 32768 + new_tokens), (65536, 65536 + new_tokens), (1024, 32768))
    ):
        layout = td.Layout(config.n_q_heads, config.n_k_heads, config.n_v_heads, config.d_qk_head, config.d_v_head,
                           config.n_v_heads // config.n_k_heads if config.n_v_heads % config.n_k_heads == 0 else 1)
        kv = batch * context * kv_bytes_per_token(config)
        k_only = batch * context * config.n_layers * config.n_k_heads * config.d_qk_head * 2
        selected = k_only + batch * config.n_layers * config.n_q_heads * min(top_k, context) * config.d_v_head * 2
        n_splits = td.n_splits_for(layout, batch, capacity, td.DEFAULT, H100_SMS)
        kp = max(16, 1 << (top_k - 1).bit_length())
        min_select = td.SELECT_SPLIT_BLOCKS * kp
        select_splits = td.n_splits_for(layout, batch, capacity, td.DEFAULT, H100_SMS, min_split=min_select)
        diff = config.n_k_heads != config.n_v_heads
        rows.append({
            "model": name, "batch": batch, "context": context, "capacity": capacity,
            "kv_bytes": kv, "weight_bytes": weight_bytes(config), "selective_kv_bytes": selected if diff else None,
            "programs_split_before": capacity_rule(layout, batch, capacity, context, td.DEFAULT.block_t),
            "programs_split": td.working_programs(layout, batch, context, n_splits, td.DEFAULT.block_t),
            # the earlier K pass wrote scores (-inf past the length) up to the capacity, then topk over them
            "programs_select_before": capacity_rule(layout, batch, capacity, capacity, td.DEFAULT.block_t) if diff else None,
            "programs_select": td.working_programs(layout, batch, context, select_splits, kp, min_select) if diff else None,
        })
    return rows


def print_plan(rows: list[dict], top_k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one decode step, bf16, exact (no GPU): bytes read, and Triton programs with work on "
                        f"{H100_SMS} SMs (splits from the length; before: from the capacity); selective V k={top_k}")
    for column in ("model", "batch", "held / capacity", "KV GB", "weights GB", "floor ms at 4.8 TB/s",
                   "selective V KV GB", "split-KV programs", "before", "selective V K-pass programs", "before"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        floor = (r["kv_bytes"] + r["weight_bytes"]) / 4.8e12 * 1e3
        table.add_row(
            r["model"], str(r["batch"]), f"{r['context']:,} / {r['capacity']:,}", f"{r['kv_bytes'] / 1e9:.2f}",
            f"{r['weight_bytes'] / 1e9:.2f}", f"{floor:.2f}",
            f"{r['selective_kv_bytes'] / 1e9:.2f}" if r["selective_kv_bytes"] else "-",
            str(r["programs_split"]), str(r["programs_split_before"]),
            str(r["programs_select"] or "-"), str(r["programs_select_before"] or "-"),
        )
    Console(width=200).print(table)


# ------------------------------------------------------------------------------------------- quality


def quality(run: str, data: list[str], device: torch.device, top_ks: list[int], windows: int, new_tokens: int) -> dict:
    """Held-out perplexity and greedy agreement of selective V against full attention."""
    from sigma.generate import Engine, decode_nll, perplexity
    from sigma.shards import ShardSet
    from sigma.train import TrainConfig, _held_out_sets

    engine = Engine.load(run, device=device, dtype=torch.float32)
    checkpoint = engine_checkpoint(run)
    config = TrainConfig.from_dict(json.loads((checkpoint / "state.json").read_text())["train_config"])
    sets = _held_out_sets([ShardSet.open(d) for d in data], engine.tokenizer, config.sequence_length(),
                          config.override(eval_sequences=windows))
    held_out = torch.cat([w for _, w in sets])
    attention = "auto"
    full = decode_nll(engine.model, held_out, attention=attention)
    prompts = [row[: max(1, len(row) // 4)].tolist() for row in held_out[:8]]
    greedy = [ids for ids, _ in engine.generate_ids(prompts, new_tokens, ignore_eos=True)]
    result = {"checkpoint": str(checkpoint), "windows": len(held_out), "window_tokens": held_out.size(1),
              "ppl_full": perplexity(full), "by_k": []}
    for top_k in top_ks:
        nll = decode_nll(engine.model, held_out, attention=attention, selective_v=top_k)
        selective = Engine(engine.model, engine.tokenizer, attention=attention, selective_v=top_k)
        ids = [i for i, _ in selective.generate_ids(prompts, new_tokens, ignore_eos=True)]
        same = sum(a == b for x, y in zip(ids, greedy) for a, b in zip(x, y)) / sum(map(len, greedy))
        identical = sum(x == y for x, y in zip(ids, greedy)) / len(greedy)
        result["by_k"].append({"top_k": top_k, "ppl": perplexity(nll), "ppl_vs_full": perplexity(nll) / perplexity(full),
                               "greedy_tokens_equal": same, "greedy_sequences_identical": identical})
    return result


def engine_checkpoint(run: str) -> Path:
    from sigma.checkpoint import find_checkpoint

    return find_checkpoint(run)


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefixes", nargs="+", type=int, default=[2048, 4096, 16384, 32768, 65536])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--top-k", type=int, default=TOP_K, help="V rows per query head for selective V")
    parser.add_argument("--reps", type=int, default=20, help="graph replays per timing group")
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed for tokens/s")
    parser.add_argument("--e2e-prefixes", nargs="+", type=int, default=[2048, 32768, 65536], help="prefixes for CEET and tokens/s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (Triton through its interpreter if installed)")
    parser.add_argument("--no-triton", action="store_true", help="leave the Triton kernels out")
    parser.add_argument("--quality", metavar="RUN", help="a trained run: selective V's held-out perplexity and greedy agreement")
    parser.add_argument("--data", nargs="+", metavar="DIR", help="the run's curated data folders (for --quality)")
    parser.add_argument("--quality-k", nargs="+", type=int, default=[8, 16, 32, 64, 100])
    parser.add_argument("--plan", action="store_true", help="only the exact counts that need no GPU: bytes and launch grids")
    args = parser.parse_args(argv)
    if args.plan:
        print_plan(launch_plan(paper_models(False, 65536 + 256), args.top_k), args.top_k)
        return 0

    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        device, dtype = torch.device("cpu"), torch.float32
        args.prefixes, args.batches, args.e2e_prefixes, args.reps, args.steps = [128], [1, 2], [128], 1, 2
        args.top_k = min(args.top_k, 32)
        global GROUPS
        GROUPS = 1
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.quality:
        if not args.data:
            parser.error("--quality needs --data")
        result = quality(args.quality, args.data, device, args.quality_k, windows=32, new_tokens=32)
        print_quality(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return 0

    use_triton = triton_available() and (device.type == "cuda" or args.smoke) and not args.no_triton
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device_name}, torch {torch.__version__}, dtype {dtype}, triton {'yes' if use_triton else 'no'}", flush=True)
    started = time.perf_counter()
    models = paper_models(args.smoke, max(args.prefixes) + 4 * args.steps + 64)
    backends = (["triton"] if use_triton else []) + ["torch", "concat-v"]
    results: dict = {"device": device_name, "torch": torch.__version__, "dtype": str(dtype), "paper": PAPER, "top_k": args.top_k}

    print("checking kernels against float64 ...", flush=True)
    results["kernel_checks"] = check_kernels(device, backends if not args.smoke else ["torch", "concat-v"] + (["triton"] if use_triton else []))
    print("checking greedy generation with the cache against full recompute ...", flush=True)
    small = paper_models(True, 1024)["DiffQKV 32/4/16"] if args.smoke else models["DiffQKV 32/4/16"].replace(n_layers=4)
    results["greedy_checks"] = check_greedy(small, device, [b for b in backends if b != "concat-v"] + ["concat-v"], 24 if not args.smoke else 6)
    results["copy_bandwidth"] = copy_bandwidth(device)

    print("decode-kernel time ...", flush=True)
    results["kernels"] = []
    for prefix, batch in itertools.product(args.prefixes, args.batches):
        for name, config in models.items():
            results["kernels"].extend(measure_kernels(name, config, batch, prefix, device, dtype, args.reps, use_triton, args.top_k))
        print(f"  {batch} x {prefix} done ({time.perf_counter() - started:.0f} s)", flush=True)

    print("attention layer and decode tokens/s ...", flush=True)
    results["models"] = []
    # The smoke run decodes with torch: the interpreter would take minutes; the checks above
    # already ran the engine on the Triton kernels.
    attention = "triton" if use_triton and not args.smoke else "torch"
    for name, config in models.items():
        model = build_model(config, device, dtype)
        diff = config.n_k_heads != config.n_v_heads
        for prefix, batch in itertools.product(args.e2e_prefixes, args.batches):
            variants = [(attention, None), ("concat-v", None)] + ([(attention, args.top_k)] if diff else [])
            for backend, top_k in variants:
                results["models"].append(measure_model(name, model, batch, prefix, device, dtype, args.reps, backend, top_k, args.steps))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"  {name} done ({time.perf_counter() - started:.0f} s)", flush=True)

    print("memory ...", flush=True)
    results["memory_context"] = 32768 if not args.smoke else 256
    results["memory"] = largest_batches(models, results["memory_context"], device, dtype, attention)
    results["wall_s"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_tables(results)
    return 0


# ------------------------------------------------------------------------------------------- tables


def print_tables(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    copy = results["copy_bandwidth"]
    gqa_sdpa = {(r["batch"], r["prefix"]): r for r in results["kernels"] if r["model"] == "GQA 16/16" and r["kernel"].startswith("SDPA")}
    gqa_best = {}
    for r in results["kernels"]:
        if r["model"] == "GQA 16/16":
            key = (r["batch"], r["prefix"])
            gqa_best[key] = min(gqa_best.get(key, math.inf), r["ket_s"])

    checks = Table(title="correctness (before timing)")
    for column in ("check", "result"):
        checks.add_column(column)
    worst = max(results["kernel_checks"], key=lambda r: r["error"])
    checks.add_row(f"decode kernels vs float64 ({len(results['kernel_checks'])} layout x backend x top-k cases, bf16)",
                   f"worst relative error {worst['error']:.2e} ({worst['backend']}, {worst['layout']})")
    for r in results["greedy_checks"]:
        checks.add_row(f"greedy with cache ({r['backend']}) vs full recompute, fp32", f"{r['tokens_equal']}/{r['tokens']} tokens equal")
    checks.add_row("copy bandwidth (read + write)", f"{copy / 1e12:.2f} TB/s" if copy else "-")
    console.print(checks)

    table = Table(title=f"decode-kernel time (KET) per layer on {results['device']}; "
                        f"paper: DiffQKV -{PAPER['ket_cut_32k']}% at 32K, bytes allow -{PAPER['bytes_cut']}%")
    for column in ("model", "kernel", "batch", "prefix", "KET us", "vs GQA SDPA", "vs GQA best", "GB/s", "of copy BW"):
        table.add_column(column, justify="left" if column in ("model", "kernel") else "right")
    for r in results["kernels"]:
        key = (r["batch"], r["prefix"])
        bandwidth = r["bytes"] / r["ket_s"] if r["bytes"] else None
        table.add_row(
            r["model"], r["kernel"], str(r["batch"]), f"{r['prefix']:,}", f"{1e6 * r['ket_s']:.1f}",
            f"{100 * (r['ket_s'] / gqa_sdpa[key]['ket_s'] - 1):+.1f}%" if key in gqa_sdpa else "-",
            f"{100 * (r['ket_s'] / gqa_best[key] - 1):+.1f}%" if key in gqa_best else "-",
            f"{bandwidth / 1e9:,.0f}" if bandwidth else "-",
            f"{100 * bandwidth / copy:.0f}%" if bandwidth and copy else "-",
        )
    console.print(table)

    best_ceet, best_rate = {}, {}  # the GQA model on whichever attention served it best
    for r in results["models"]:
        if r["model"] == "GQA 16/16":
            key = (r["batch"], r["prefix"])
            best_ceet[key] = min(best_ceet.get(key, math.inf), r["ceet_s"])
            best_rate[key] = max(best_rate.get(key, 0.0), r["tokens_per_s"])
    table = Table(title=f"attention layer (CEET) and decode tokens/s against the GQA model's best attention; "
                        f"paper: CEET -{PAPER['ceet_cut_64k']}% at 64K outputs")
    for column in ("model", "attention", "batch", "prefix", "CEET us", "CEET vs GQA", "step ms", "tokens/s", "tokens/s vs GQA"):
        table.add_column(column, justify="left" if column in ("model", "attention") else "right")
    for r in results["models"]:
        key = (r["batch"], r["prefix"])
        table.add_row(
            r["model"], r["attention"], str(r["batch"]), f"{r['prefix']:,}", f"{1e6 * r['ceet_s']:.1f}",
            f"{100 * (r['ceet_s'] / best_ceet[key] - 1):+.1f}%" if key in best_ceet else "-", f"{1e3 * r['step_s']:.2f}",
            f"{r['tokens_per_s']:,.1f}", f"{r['tokens_per_s'] / best_rate[key]:.3f}x" if key in best_rate else "-",
        )
    console.print(table)

    table = Table(title=f"KV cache and the largest batch at {results['memory_context']:,} positions of context")
    for column in ("model", "KV bytes/token/layer", "KV KiB/token", "weights GiB", "memory GiB", "max batch", "decoded a step"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results["memory"]:
        table.add_row(
            r["model"], f"{r['kv_bytes_per_token_layer']:,}", f"{r['kv_bytes_per_token'] / 1024:,.1f}",
            f"{r['weights_bytes'] / 2**30:.2f}", f"{r['memory_bytes'] / 2**30:.1f}" if "memory_bytes" in r else "-",
            str(r.get("max_batch", "-")), {True: "yes", False: "OOM"}.get(r.get("verified"), "-"),
        )
    console.print(table)
    print(f"wall time {results['wall_s']:.0f} s")


def print_quality(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"selective V on {result['checkpoint']}: {result['windows']} held-out windows of "
                        f"{result['window_tokens']} tokens; full attention ppl {result['ppl_full']:.3f}")
    for column in ("top-k V rows", "held-out ppl", "vs full", "greedy tokens equal", "greedy sequences identical"):
        table.add_column(column, justify="right")
    for r in result["by_k"]:
        table.add_row(str(r["top_k"]), f"{r['ppl']:.3f}", f"{100 * (r['ppl_vs_full'] - 1):+.2f}%",
                      f"{100 * r['greedy_tokens_equal']:.0f}%", f"{100 * r['greedy_sequences_identical']:.0f}%")
    Console(width=160).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
