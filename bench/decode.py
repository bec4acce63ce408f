"""Decode speed of DiffQKV against GQA 16/16: the paper's efficiency claim, measured in one run.

Sigma (arXiv 2501.13629, section 3) times Sigma-1.5B (26 layers, 32 Q / 4 K / 16 V heads of dim
64, augmented Q 3072) against the same model with GQA 16/16 on one H100: 25.31% less decode-
kernel time (KET) at a 32K prefix and 33.36% less attention-layer time (CEET) at 64K outputs;
the bytes allow 37.5%. This script measures, with random weights and random cache contents
(speed does not depend on them), bf16, at the prefixes and batches asked for:

- ``copy``: the copy bandwidth that "of copy BW" divides by: a 4 GiB device-to-device copy (far
  beyond the 60 MB L2), bytes read plus written, three ways: ``copy_`` launched eagerly, the same
  captured in a CUDA graph (a graph's memcpy node may go to a copy engine, slower than the SMs), and
  a Triton copy kernel; the fastest is the reference.
- ``kernel-checks``: every decode backend against a float64 reference (head layouts, ragged
  lengths, bf16).
- ``decoder-checks``: the decoder against full recompute (``sigma.decode_check``: teacher-forced
  logits within a tolerance, greedy tokens, and a digest of the logits that repeated runs must
  reproduce).
- ``kernels``: KET, one decode-attention call per layer over that layer's own cache (26 caches,
  so nothing is served from L2 that a real step would read from memory), per layer: the Triton
  split-KV kernel, selective V (all of K, the top-k V rows per query head) and its K pass alone,
  the concat-V view over SDPA; for GQA 16/16: SDPA on its fastest backend and the Triton kernel.
  Selective V's chosen rows are compared with ``torch.topk`` at the same shape.
- ``models``: per model, batch and prefix: CEET (the attention layer of a decode step, per
  layer), decode tokens/s of the whole step captured as a CUDA graph, eager blocks and compiled
  blocks (``Decoder(compile=True)``, whose logits must match the eager step's), selective V; each
  step beside its bytes floor (weights plus KV cache at the reference copy bandwidth).
- ``memory``: KV bytes per token and the largest batch that fits at 32K, checked by a step.

Every measurement is one JSON line appended to ``--rows`` the moment it is taken (``bench/row_log.py``);
a failed check or measurement is a row with its error and the run goes on. Every CUDA timing is a
CUDA graph replayed many times (the copy also eagerly), the median of five groups.

    python bench/decode.py --rows decode.jsonl       # on a GPU: every part, the tables last
    python bench/decode.py --only kernels --prefixes 32768 --batches 1 8
    python bench/decode.py --smoke                   # tiny shapes on the CPU: the code paths, not speed
    python bench/decode.py --quality RUN --data DIR [DIR ...]   # selective V on a trained checkpoint
    python bench/decode.py --plan                    # exact bytes per step and launch grids; no GPU needed
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

from bench.row_log import RowLog, read_rows  # noqa: E402
from sigma.config import PRESETS, ModelConfig  # noqa: E402
from sigma.kernels.decode import (  # noqa: E402
    concat_v_attention, decode_attention, reference_decode_attention, torch_decode_attention, triton_available,
)
from sigma.kv_cache import KVCache, kv_bytes_per_token, kv_bytes_per_token_per_layer, max_batch_size, weight_bytes  # noqa: E402

PAPER = {"ket_cut_32k": 25.31, "ceet_cut_64k": 33.36, "bytes_cut": 37.5}
TOP_K = 100
GROUPS = 5  # timing groups; the median is reported
PARTS = ("copy", "kernel-checks", "decoder-checks", "kernels", "models", "memory")
CHECK_LAYOUTS = [(32, 4, 16, 64, 64), (32, 16, 16, 64, 64), (4, 1, 2, 16, 16), (8, 4, 2, 16, 16), (6, 1, 3, 16, 32),
                 (8, 8, 8, 64, 64)]
BF16_TOLERANCE = 2e-2  # relative to the largest reference value: bf16 rounding, far below a wrong head map


# --------------------------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], object], device: torch.device, reps: int, groups: int | None = None) -> float:
    """Seconds per call of ``fn``: on CUDA a captured graph replayed ``reps`` times, median of groups."""
    groups = groups or GROUPS
    if device.type != "cuda":
        return time_eager(fn, device, reps, groups)
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


def time_eager(fn: Callable[[], object], device: torch.device, reps: int, groups: int | None = None) -> float:
    """Seconds per call of ``fn`` launched eagerly (device events on CUDA), median of groups."""
    groups = groups or GROUPS
    fn()
    samples = []
    for _ in range(groups):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1000 / reps)
        else:
            started = time.perf_counter()
            for _ in range(reps):
                fn()
            samples.append((time.perf_counter() - started) / reps)
    return statistics.median(samples)


# ------------------------------------------------------------------------------------- copy bandwidth


def copy_rows(log: RowLog, device: torch.device, nbytes: int) -> float | None:
    """The copy bandwidth, three ways; returns the fastest (the reference), bytes/s read + written."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()  # never time zeros
    dst = torch.empty_like(src)
    moved = 2 * src.nbytes
    variants = [("copy_, eager", lambda: dst.copy_(src), time_eager), ("copy_ in a CUDA graph", lambda: dst.copy_(src), time_call)]
    if device.type == "cuda" and triton_available():
        from bench.copy_kernel import triton_copy

        variants.append(("Triton copy kernel", lambda: triton_copy(src, dst), time_eager))
    best = None
    for name, fn, timer in variants:
        with log.guard("copy", variant=name):
            dst.zero_()
            seconds = timer(fn, device, reps=10)
            if not torch.equal(dst, src):
                raise RuntimeError(f"{name} did not copy the buffer")
            log.write("copy", variant=name, bytes=moved, seconds=seconds, bytes_per_s=moved / seconds)
            best = max(best or 0.0, moved / seconds)
    del src, dst
    return best


# ----------------------------------------------------------------------------------------- the models


def paper_models(smoke: bool, max_len: int) -> dict[str, ModelConfig]:
    sigma, gqa = PRESETS["sigma-1.5b"], PRESETS["sigma-1.5b-gqa"]
    if smoke:  # the paper's heads, on a model a CPU runs in seconds
        small = dict(n_layers=2, d_model=256, d_ffn=512, vocab_size=512)
        sigma, gqa = sigma.replace(**small, q_aug_dim=384), gqa.replace(**small)
    return {"DiffQKV 32/4/16": sigma.replace(max_seq_len=max_len), "GQA 16/16": gqa.replace(max_seq_len=max_len)}


def build_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, seed: int = 0):
    from sigma.generate import to_inference
    from sigma.model import Transformer

    torch.manual_seed(seed)
    with torch.device(device):
        model = Transformer(config)
    return to_inference(model, device, dtype)


def fill_random(cache: KVCache, length: int, seed: int = 0) -> KVCache:
    """Random K and V (seeded, so that two caches of one shape hold the same), ``length`` held."""
    gen = torch.Generator(cache.k.device).manual_seed(seed)
    cache.k.normal_(generator=gen)
    cache.v.normal_(generator=gen)
    cache.lengths.fill_(length)
    return cache


# ------------------------------------------------------------------------------------------- checks


def check_kernels(log: RowLog, device: torch.device, backends: list[str], layouts: list[tuple]) -> None:
    """Every decode backend against the float64 reference: head layouts, ragged lengths, bf16."""
    lengths = torch.tensor([700, 1, 333], dtype=torch.int32, device=device)
    gen = torch.Generator().manual_seed(0)
    for backend in backends:
        with log.guard("check", name=f"{backend} decode attention vs float64", ok=False):
            worst = (0.0, "-")
            for (n_q, n_k, n_v, d_qk, d_v), top_k in itertools.product(layouts, (None, TOP_K)):
                r = n_v // n_k if n_v % n_k == 0 else 1
                if backend == "concat-v" and (top_k or r != n_v // n_k or n_v % n_k):
                    continue
                q = (torch.randn(3, n_q, d_qk, generator=gen) * 2).to(device, torch.bfloat16)
                k = torch.randn(3, n_k, 700, d_qk, generator=gen).to(device, torch.bfloat16)
                v = torch.randn(3, n_v // r, 700, r * d_v, generator=gen).to(device, torch.bfloat16)
                want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), n_v, top_k)
                got = decode_attention(q, k, v, lengths, n_v, top_k=top_k, backend=backend).double().cpu()
                error = ((got - want).abs().max() / want.abs().max()).item()
                worst = max(worst, (error, f"{n_q}/{n_k}/{n_v} d{d_qk}/{d_v} top_k={top_k}"))
            log.write("check", name=f"{backend} decode attention vs float64", ok=worst[0] < BF16_TOLERANCE,
                      error_max=worst[0], worst_case=worst[1], tolerance=BF16_TOLERANCE)


def check_decoders(log: RowLog, config: ModelConfig, device: torch.device, backends: list[str], new_tokens: int,
                   prompt_lengths: tuple[int, ...]) -> None:
    """The decoder against full recompute (float32, a batch of prompts of different lengths), for
    each backend; on CUDA each with its CUDA graph, the first twice more (again, and without the
    graph), so that digests show whether repeated runs give the same logits."""
    from sigma.decode_check import Reference, check_decoder

    model = build_model(config.replace(max_seq_len=max(prompt_lengths) + new_tokens + 8), device, torch.float32)
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, config.vocab_size, (n,), generator=gen).tolist() for n in prompt_lengths]
    reference = Reference.compute(model, prompts, new_tokens)
    graphs = device.type == "cuda"
    runs = [(b, graphs) for b in backends]
    if graphs:
        runs[1:1] = [(backends[0], True), (backends[0], False)]
    digests: dict[str, list[str]] = {}
    for backend, graph in runs:
        name = f"decoder vs recompute ({backend}{', CUDA graph' if graph else ''})"
        with log.guard("check", name=name, ok=False):
            found = check_decoder(model, reference, attention=backend, cuda_graph=graph)
            log.write("check", name=name, **found.to_dict())
            digests.setdefault(name, []).append(found.digest)
    for name, seen in digests.items():
        if len(seen) > 1:  # the same decoder on the same input twice: bit for bit, or a race
            log.write("check", name=f"{name}: logits identical in {len(seen)} runs", ok=len(set(seen)) == 1, digests=seen)
    del model


def check_selection(log: RowLog, q, cache: KVCache, top_k: int, label: str) -> None:
    """Selective V's chosen rows (layer 0) against ``torch.topk`` of the same float32 scores."""
    from sigma.kernels import triton_decode as td

    with log.guard("check", name=f"selective V rows = top-k ({label})", ok=False):
        config = cache.config
        positions = torch.empty(q.size(0), config.n_q_heads, top_k, dtype=torch.int32, device=q.device)
        td.selective_v_attention(q, cache.k[0], cache.v[0], cache.lengths, config.n_v_heads, top_k, positions=positions)
        group = config.n_q_heads // config.n_k_heads
        k = cache.k[0].float().repeat_interleave(group, 1)  # (B, n_q, T, d)
        scores = (k @ q.float().unsqueeze(-1)).squeeze(-1)[..., : int(cache.lengths[0])]
        want = scores.topk(min(top_k, scores.size(-1)), -1).indices.sort(-1).values
        got = positions.long().sort(-1).values
        heads_equal = (got == want).all(-1)
        log.write("check", name=f"selective V rows = top-k ({label})", ok=bool(heads_equal.all()),
                  heads_equal=int(heads_equal.sum()), heads=heads_equal.numel())


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


# Launch configurations tried per shape (block of positions, warps, pipeline stages, programs per
# SM, register cap): few, chosen for memory parallelism (more programs resident, or more loads
# per program; ``bench/kernel_resources.py`` gives their registers without a GPU); each costs a
# Triton compile, so the whole tuning fits in seconds.
TUNING = [(64, 4, 3, 4, None), (64, 4, 2, 4, 128), (32, 4, 2, 8, 128), (32, 4, 2, 8, None), (64, 8, 2, 4, None),
          (128, 8, 2, 2, None), (128, 4, 2, 2, 128)]


def tune_triton(log: RowLog, kind: str, q, k, v, lengths, n_v: int, device: torch.device, top_k: int = TOP_K) -> None:
    """Pick the fastest launch configuration for this shape on one layer's cache; recorded as a row."""
    from sigma.kernels import triton_decode as td

    if device.type != "cuda":
        return
    layout = td.layout_of(q, k, v, n_v)
    key = td.tuning_key(kind, layout, q.size(0), k.size(2))
    if key in td.TUNED:
        return
    work = td.SelectiveWorkspace.allocate(q.size(0), layout.n_q, k.size(2), top_k, q.device)
    timings = []
    for block_t, warps, stages, waves, maxnreg in TUNING:
        config = td.LaunchConfig(block_t, warps, stages, waves, maxnreg)
        if kind == "split":
            fn = lambda: td.split_kv_attention(q, k, v, lengths, n_v, config)  # noqa: E731
        else:
            fn = lambda: td.score_pass(q, k, lengths, layout, work, config)  # noqa: E731
        try:
            timings.append((time_call(fn, device, reps=5, groups=1), config))
        except Exception:  # noqa: BLE001 - e.g. out of shared memory for this tile
            continue
    if timings:
        seconds, best = min(timings, key=lambda x: x[0])
        td.TUNED[key] = best
        log.write("tuned", key=list(key), config=list(vars(best).values()), seconds=seconds, tried=len(timings))


def load_tuned(rows: list[dict]) -> None:
    """Launch choices an earlier part of the run made (its "tuned" rows), for this process's kernels."""
    from sigma.kernels import triton_decode as td

    for r in rows:
        if r["kind"] == "tuned":
            td.TUNED[tuple(r["key"])] = td.LaunchConfig(*r["config"])


def measure_kernels(log: RowLog, name: str, config: ModelConfig, batch: int, prefix: int, device: torch.device,
                    dtype: torch.dtype, reps: int, use_triton: bool, top_k: int) -> None:
    """KET per layer for every kernel that applies to this model, over the model's layer count."""
    cache = fill_random(KVCache(config, batch, prefix, device, dtype), prefix)
    n_v, layers = config.n_v_heads, config.n_layers
    q = torch.randn(batch, config.n_q_heads, config.d_qk_head, device=device, dtype=dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    kv_bytes = batch * prefix * kv_bytes_per_token_per_layer(config, dtype)
    k_bytes = batch * prefix * config.n_k_heads * config.d_qk_head * itemsize
    scores_bytes = batch * prefix * config.n_q_heads * 4  # float32 scores, written once
    rows_bytes = batch * config.n_q_heads * min(top_k, prefix) * config.d_v_head * itemsize  # V rows read, at most
    diff = config.n_k_heads != config.n_v_heads
    shape = dict(model=name, batch=batch, prefix=prefix)
    runs: list[tuple[str, int, Callable[[], object]]] = []
    if use_triton:
        from sigma.kernels import triton_decode as td

        if diff:  # GQA on Triton is for comparison only: its default launch, no tuning time
            tune_triton(log, "split", q, cache.k[0], cache.v[0], cache.lengths, n_v, device)
        runs.append(("triton split-KV", kv_bytes, lambda: [
            td.split_kv_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v) for i in range(layers)]))
        if diff:
            tune_triton(log, "scores", q, cache.k[0], cache.v[0], cache.lengths, n_v, device, top_k)
            layout = td.layout_of(q, cache.k[0], cache.v[0], n_v)
            work = td.SelectiveWorkspace.allocate(batch, config.n_q_heads, prefix, top_k, device)
            runs.append((f"triton selective V k={top_k}", k_bytes + scores_bytes + rows_bytes, lambda: [
                td.selective_v_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, top_k, work=work) for i in range(layers)]))
            runs.append(("  of which: K pass", k_bytes + scores_bytes, lambda: [
                td.score_pass(q, cache.k[i], cache.lengths, layout, work) for i in range(layers)]))
    else:
        runs.append(("torch", kv_bytes, lambda: [
            decode_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, backend="torch") for i in range(layers)]))
        if diff:
            runs.append((f"torch selective V k={top_k}", k_bytes + rows_bytes, lambda: [
                decode_attention(q, cache.k[i], cache.v[i], cache.lengths, n_v, backend="torch", top_k=top_k)
                for i in range(layers)]))
    for kernel, moved, fn in runs:
        with log.guard("ket", kernel=kernel, **shape):
            log.write("ket", kernel=kernel, **shape, ket_s=time_call(fn, device, reps) / layers, bytes=moved)
    if diff:
        call = lambda: [concat_v_attention(q, cache.k[i], cache.v[i], None, n_v) for i in range(layers)]  # noqa: E731
        label = "SDPA concat-V"
    else:
        q4 = q.unsqueeze(2)
        call = lambda: [F.scaled_dot_product_attention(q4, cache.k[i], cache.v[i], enable_gqa=True) for i in range(layers)]  # noqa: E731
        label = "SDPA"
    with log.guard("ket", kernel=label, **shape):
        seconds, backend = fastest_sdpa(call, device, reps)
        log.write("ket", kernel=f"{label} ({backend})", **shape, ket_s=seconds / layers, bytes=kv_bytes)

    if use_triton and device.type == "cuda":  # the tuned launches agree with the torch path at this shape
        checks = [("split-KV", None, lambda: td.split_kv_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v))]
        if diff:
            checks.append((f"selective V k={top_k}", top_k,
                           lambda: td.selective_v_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v, top_k)))
        for label, k_rows, kernel in checks:
            with log.guard("check", name=f"triton {label} vs torch at {batch} x {prefix}", ok=False):
                want = torch_decode_attention(q, cache.k[0], cache.v[0], cache.lengths, n_v, k_rows).double()
                error = ((kernel().double() - want).abs().max() / want.abs().max()).item()
                log.write("check", name=f"triton {label} vs torch at {batch} x {prefix}", ok=error < BF16_TOLERANCE,
                          error_max=error, tolerance=BF16_TOLERANCE)
                del want
        if diff:
            check_selection(log, q, cache, top_k, f"{batch} x {prefix}")
    del cache
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------- layer and model


def step_floor_bytes(config: ModelConfig, batch: int, prefix: int, dtype: torch.dtype) -> int:
    """What one decode step must read: every weight once and each sequence's cache up to its length."""
    return weight_bytes(config, dtype) + batch * prefix * kv_bytes_per_token(config, dtype)


def measure_model(log: RowLog, name: str, model, batch: int, prefix: int, device: torch.device, dtype: torch.dtype,
                  reps: int, attention: str, top_k: int | None, steps: int, compile: bool, copy_bw: float | None):
    """CEET (per layer; eager blocks only) and decode tokens/s with the cache holding ``prefix``
    random positions; returns the logits of a first probe step, for comparing variants."""
    from sigma.generate import Decoder

    config = model.config
    graphs = device.type == "cuda"
    started = time.perf_counter()
    decoder = Decoder(model, batch, prefix + 2 * steps + 8, attention=attention, selective_v=top_k, cuda_graph=graphs,
                      compile=compile)
    build_s = time.perf_counter() - started
    fill_random(decoder.cache, prefix)
    decoder.host_lengths = [prefix] * batch
    with torch.no_grad():
        probe = decoder.step(torch.zeros(batch, dtype=torch.long, device=device)).clone()
        row = dict(model=name, attention=attention + (f" selective V k={top_k}" if top_k else ""),
                   blocks="compiled" if compile else "eager", batch=batch, prefix=prefix, build_s=build_s)
        if not compile:  # CEET: each layer's attention on its own cache, the same token, lengths held
            x = torch.randn(batch, 1, config.d_model, device=device, dtype=dtype)
            positions = torch.full((batch, 1), prefix, device=device)
            cos, sin = model.rope_cos[positions].unsqueeze(1), model.rope_sin[positions].unsqueeze(1)

            def attention_layers():
                decoder.attention.begin_step(None if graphs else prefix + 1)
                for block, layer_cache in zip(model.layers, decoder.layers):
                    block.attention(x, cos, sin, None, layer_cache)

            row["ceet_s"] = time_call(attention_layers, device, reps) / config.n_layers
        if graphs:  # the captured step, greedy, fed back on the device (no host round trip)
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
    floor = step_floor_bytes(config, batch, prefix, dtype)
    row.update(step_s=step_s, tokens_per_s=batch / step_s, floor_bytes=floor)
    if copy_bw:
        row.update(floor_s=floor / copy_bw, step_vs_floor=step_s * copy_bw / floor)
    log.write("model", **row)
    del decoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return probe


def measure_models(log: RowLog, models: dict[str, ModelConfig], batches: list[int], prefixes: list[int],
                   device: torch.device, dtype: torch.dtype, reps: int, attention: str, top_k: int, steps: int,
                   compile: bool, copy_bw: float | None) -> None:
    for name, config in models.items():
        with log.guard("model", model=name, stage="build"):
            model = build_model(config, device, dtype)
        diff = config.n_k_heads != config.n_v_heads
        for prefix, batch in itertools.product(prefixes, batches):
            shape = dict(model=name, batch=batch, prefix=prefix)
            probes = {}
            variants = [(attention, None, False)] + ([(attention, None, True)] if compile else [])
            variants += [(attention, top_k, False)] if diff else []
            for backend, k, compiled in variants:
                with log.guard("model", attention=backend, blocks="compiled" if compiled else "eager", **shape):
                    probes[(k, compiled)] = measure_model(log, name, model, batch, prefix, device, dtype, reps, backend, k,
                                                          steps, compiled, copy_bw)
            if (None, True) in probes and (None, False) in probes:
                eager, compiled = probes[(None, False)], probes[(None, True)]
                error = ((compiled - eager).abs().amax(-1) / eager.std(-1)).max().item()
                log.write("check", name=f"compiled step = eager step ({name}, {batch} x {prefix})", ok=error < BF16_TOLERANCE,
                          error_max=error, tolerance=BF16_TOLERANCE,
                          greedy_equal=bool((compiled.argmax(-1) == eager.argmax(-1)).all()))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batches(log: RowLog, models: dict[str, ModelConfig], context: int, device: torch.device,
                    dtype: torch.dtype, attention: str) -> None:
    """KV bytes per token and the largest batch at ``context``, checked by decoding one step."""
    from sigma.generate import Decoder

    for name, config in models.items():
        row = {"model": name, "context": context, "kv_bytes_per_token_layer": kv_bytes_per_token_per_layer(config, dtype),
               "kv_bytes_per_token": kv_bytes_per_token(config, dtype), "weights_bytes": weight_bytes(config, dtype)}
        with log.guard("memory", **row):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                free, _ = torch.cuda.mem_get_info(device)
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
            log.write("memory", **row)


# ----------------------------------------------------------------------------- what needs no GPU


H100_SMS = 132  # the H100 SXM and the H200 both have 132 SMs


def launch_plan(models: dict[str, ModelConfig], top_k: int, new_tokens: int = 256) -> list[dict]:
    """Exact counts, no GPU: bytes one decode step reads, and the Triton kernels' programs with
    work on a 132-SM GPU, for a cache of ``context + new_tokens`` positions (as the engine sizes it)
    holding ``context`` positions, and holding 1K of a 32K cache."""
    from sigma.kernels import triton_decode as td

    rows = []
    for (name, config), batch, (context, capacity) in itertools.product(
        models.items(), (1, 8), ((32768, 32768 + new_tokens), (65536, 65536 + new_tokens), (1024, 32768))
    ):
        layout = td.Layout(config.n_q_heads, config.n_k_heads, config.n_v_heads, config.d_qk_head, config.d_v_head,
                           config.n_v_heads // config.n_k_heads if config.n_v_heads % config.n_k_heads == 0 else 1)
        kv = batch * context * kv_bytes_per_token(config)
        per_position = config.n_layers * (config.n_k_heads * config.d_qk_head * 2 + config.n_q_heads * 4)  # K, float32 scores
        selected = batch * context * per_position + batch * config.n_layers * config.n_q_heads * min(top_k, context) * config.d_v_head * 2
        n_splits = td.n_splits_for(layout, batch, capacity, td.DEFAULT, H100_SMS)
        diff = config.n_k_heads != config.n_v_heads
        rows.append({
            "model": name, "batch": batch, "context": context, "capacity": capacity, "kv_bytes": kv,
            "weight_bytes": weight_bytes(config), "selective_kv_bytes": selected if diff else None,
            "programs": td.working_programs(layout, batch, context, n_splits, td.DEFAULT.block_t),
        })
    return rows


def print_plan(rows: list[dict], top_k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one decode step, bf16, exact (no GPU): bytes read, and Triton programs with work on "
                        f"{H100_SMS} SMs; selective V k={top_k}: K, its float32 scores written, the chosen V rows")
    for column in ("model", "batch", "held / capacity", "KV GB", "weights GB", "floor ms at 4.3 TB/s",
                   "selective V GB", "split-KV / K-pass programs"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        floor = (r["kv_bytes"] + r["weight_bytes"]) / 4.3e12 * 1e3
        table.add_row(
            r["model"], str(r["batch"]), f"{r['context']:,} / {r['capacity']:,}", f"{r['kv_bytes'] / 1e9:.2f}",
            f"{r['weight_bytes'] / 1e9:.2f}", f"{floor:.2f}",
            f"{r['selective_kv_bytes'] / 1e9:.2f}" if r["selective_kv_bytes"] else "-", str(r["programs"]),
        )
    Console(width=200).print(table)


# ------------------------------------------------------------------------------------------- quality


def quality(run: str, data: list[str], device: torch.device, top_ks: list[int], windows: int, new_tokens: int) -> dict:
    """Held-out perplexity and greedy agreement of selective V against full attention."""
    from sigma.checkpoint import find_checkpoint
    from sigma.generate import Engine, decode_nll, perplexity
    from sigma.shards import ShardSet
    from sigma.train import TrainConfig, _held_out_sets

    engine = Engine.load(run, device=device, dtype=torch.float32)
    checkpoint = find_checkpoint(run)
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


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run, in this order")
    parser.add_argument("--prefixes", nargs="+", type=int, default=[32768, 65536], help="prefixes for KET")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--top-k", type=int, default=TOP_K, help="V rows per query head for selective V")
    parser.add_argument("--reps", type=int, default=20, help="graph replays per timing group")
    parser.add_argument("--steps", type=int, default=32, help="decode steps timed for tokens/s")
    parser.add_argument("--e2e-prefixes", nargs="+", type=int, default=[32768], help="prefixes for CEET and tokens/s")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled decode step")
    parser.add_argument("--check-layouts", type=int, default=len(CHECK_LAYOUTS), help="head layouts checked against float64")
    parser.add_argument("--copy-gib", type=float, default=4.0, help="buffer for the copy bandwidth (L2 is 60 MB)")
    parser.add_argument("--rows", type=Path, help="append every row to this JSON-lines file as it is measured")
    parser.add_argument("--json", type=Path, help="also write all rows here as one JSON document at the end")
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
        args.top_k, args.copy_gib, args.no_compile = min(args.top_k, 32), 1 / 16, True
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
    if args.rows and use_triton:
        load_tuned(read_rows(args.rows))  # the decode-step part uses what the kernels part tuned
    log = RowLog(args.rows, "decode")
    log.write("device", device=device_name, torch=torch.__version__, dtype=str(dtype), triton=use_triton, top_k=args.top_k)
    models = paper_models(args.smoke, max(args.prefixes + args.e2e_prefixes) + 4 * args.steps + 64)
    backends = (["triton"] if use_triton else []) + ["torch", "concat-v"]
    # the engine's attention on this device; the smoke run decodes with torch (the interpreter would
    # take minutes), its checks having run the engine on the Triton kernels
    attention = "triton" if use_triton and not args.smoke else "torch"
    copy_bw = None
    for part in args.only:
        print(f"== {part} ({log.rows[-1]['t_s']:.0f} s)", flush=True)
        if part == "copy":
            copy_bw = copy_rows(log, device, int(args.copy_gib * 2**30))
        elif part == "kernel-checks":
            check_kernels(log, device, backends, CHECK_LAYOUTS[: args.check_layouts])
        elif part == "decoder-checks":
            small = paper_models(True, 1024)["DiffQKV 32/4/16"] if args.smoke else models["DiffQKV 32/4/16"].replace(n_layers=4)
            lengths = (40, 7, 1) if args.smoke else (300, 37, 1)
            check_decoders(log, small, device, backends, 6 if args.smoke else 24, lengths)
        elif part == "kernels":
            for prefix, batch in itertools.product(args.prefixes, args.batches):
                for name, config in models.items():
                    measure_kernels(log, name, config, batch, prefix, device, dtype, args.reps, use_triton, args.top_k)
        elif part == "models":
            measure_models(log, models, args.batches, args.e2e_prefixes, device, dtype, args.reps, attention, args.top_k,
                           args.steps, compile=not args.no_compile and device.type == "cuda", copy_bw=copy_bw)
        elif part == "memory":
            largest_batches(log, models, 32768 if not args.smoke else 256, device, dtype, attention)
    if args.json:
        args.json.write_text(json.dumps(log.rows, indent=1))
    print_tables(log.rows)
    return 0


# ------------------------------------------------------------------------------------------- tables


def copy_reference(rows: list[dict]) -> float | None:
    """The fastest copy measured: what "of copy BW" divides by."""
    rates = [r["bytes_per_s"] for r in rows if r["kind"] == "copy" and "bytes_per_s" in r]
    return max(rates) if rates else None


def print_tables(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    copy = copy_reference(rows)
    errors = [r for r in rows if "error" in r]
    checks = Table(title="checks, the copy reference and errors")
    for column in ("what", "result"):
        checks.add_column(column)
    for r in rows:
        if r["kind"] == "check" and "error" not in r:
            detail = ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                               if k not in ("kind", "part", "t_s", "name", "ok", "digest", "digests", "backend", "cuda_graph", "compile"))
            checks.add_row(r["name"], ("ok" if r.get("ok") else "FAILED") + ": " + detail)
        elif r["kind"] == "copy" and "error" not in r:
            checks.add_row(f"copy bandwidth, {r['variant']} (read + write)", f"{r['bytes_per_s'] / 1e12:.2f} TB/s")
    for r in errors:
        checks.add_row(f"{r['kind']} {r.get('name') or r.get('kernel') or r.get('model') or ''}", f"ERROR {r['error']}")
    console.print(checks)

    kets = [r for r in rows if r["kind"] == "ket" and "ket_s" in r]
    gqa_sdpa = {(r["batch"], r["prefix"]): r["ket_s"] for r in kets if r["model"] == "GQA 16/16" and r["kernel"].startswith("SDPA")}
    table = Table(title=f"decode-kernel time (KET) per layer; paper: DiffQKV -{PAPER['ket_cut_32k']}% at 32K, bytes allow -{PAPER['bytes_cut']}%")
    for column in ("model", "kernel", "batch", "prefix", "KET us", "vs GQA SDPA", "GB/s", "of copy BW"):
        table.add_column(column, justify="left" if column in ("model", "kernel") else "right")
    for r in kets:
        key = (r["batch"], r["prefix"])
        bandwidth = r["bytes"] / r["ket_s"]
        table.add_row(r["model"], r["kernel"], str(r["batch"]), f"{r['prefix']:,}", f"{1e6 * r['ket_s']:.1f}",
                      f"{100 * (r['ket_s'] / gqa_sdpa[key] - 1):+.1f}%" if key in gqa_sdpa else "-",
                      f"{bandwidth / 1e9:,.0f}", f"{100 * bandwidth / copy:.0f}%" if copy else "-")
    console.print(table)

    steps = [r for r in rows if r["kind"] == "model" and "step_s" in r]
    best = {}
    for r in steps:
        if r["model"] == "GQA 16/16":
            key = (r["batch"], r["prefix"])
            best[key] = max(best.get(key, 0.0), r["tokens_per_s"])
    table = Table(title=f"decode step: attention layer (CEET) and tokens/s against the GQA model's best; bytes floor "
                        f"at the copy reference; paper: CEET -{PAPER['ceet_cut_64k']}% at 64K outputs")
    for column in ("model", "attention", "blocks", "batch", "prefix", "CEET us", "step ms", "floor ms", "step / floor",
                   "tokens/s", "vs GQA"):
        table.add_column(column, justify="left" if column in ("model", "attention", "blocks") else "right")
    for r in steps:
        key = (r["batch"], r["prefix"])
        table.add_row(r["model"], r["attention"], r["blocks"], str(r["batch"]), f"{r['prefix']:,}",
                      f"{1e6 * r['ceet_s']:.1f}" if "ceet_s" in r else "-", f"{1e3 * r['step_s']:.2f}",
                      f"{1e3 * r['floor_s']:.2f}" if "floor_s" in r else "-",
                      f"{r['step_vs_floor']:.2f}x" if "step_vs_floor" in r else "-", f"{r['tokens_per_s']:,.1f}",
                      f"{r['tokens_per_s'] / best[key]:.3f}x" if key in best else "-")
    console.print(table)

    memory = [r for r in rows if r["kind"] == "memory" and "error" not in r]
    if memory:
        table = Table(title="KV cache and the largest batch")
        for column in ("model", "context", "KV bytes/token/layer", "KV KiB/token", "weights GiB", "max batch", "decoded a step"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for r in memory:
            table.add_row(r["model"], f"{r['context']:,}", f"{r['kv_bytes_per_token_layer']:,}", f"{r['kv_bytes_per_token'] / 1024:,.1f}",
                          f"{r['weights_bytes'] / 2**30:.2f}", str(r.get("max_batch", "-")),
                          {True: "yes", False: "OOM"}.get(r.get("verified"), "-"))
        console.print(table)


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
