"""Decode attention over the asymmetric cache against a float64 reference, on every backend.

The Triton kernels run on CUDA when there is a GPU, else in Triton's CPU interpreter; they are
skipped when triton is not installed.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sigma.kernels.decode import (
    concat_v_attention, decode_attention, reference_decode_attention, torch_decode_attention, v_heads,
)

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if HAS_TRITON and DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined, at first import
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

# (n_q, n_k, n_v, d_qk, d_v): Sigma-1.5B, sigma-tiny, n_k = n_v (GQA), n_k = n_v = n_q (MHA),
# one K head with V heads not a power of two and d_v != d_qk, and more K heads than V heads.
LAYOUTS = [(32, 4, 16, 64, 64), (4, 1, 2, 16, 16), (8, 2, 2, 32, 32), (4, 4, 4, 16, 16), (6, 1, 3, 16, 32), (8, 4, 2, 16, 16)]
LENGTHS = [150, 1, 77]  # a full cache, a one-token prompt, and one in between
BF16_TOL = 2e-2  # of the largest reference value: bf16 rounding, far below a wrong head map


def _cache(layout, dtype, capacity=150, seed=0):
    n_q, n_k, n_v, d_qk, d_v = layout
    r = n_v // n_k if n_v % n_k == 0 else 1
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(len(LENGTHS), n_q, d_qk, generator=gen) * 2  # sharp attention: wrong maps show
    k = torch.randn(len(LENGTHS), n_k, capacity, d_qk, generator=gen)
    v = torch.randn(len(LENGTHS), n_v // r, capacity, r * d_v, generator=gen)
    lengths = torch.tensor(LENGTHS, dtype=torch.int32)
    return q.to(dtype), k.to(dtype), v.to(dtype), lengths


def _error(got, want):
    return ((got.double().cpu() - want).abs().max() / want.abs().max()).item()


def _tolerance(dtype):
    return BF16_TOL if dtype == torch.bfloat16 else 1e-5


def _ids(layout):
    return "q{}k{}v{}-d{}/{}".format(*layout)


@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("top_k", [None, 20])
def test_torch_path_equals_reference(layout, dtype, top_k):
    q, k, v, lengths = _cache(layout, dtype)
    want = reference_decode_attention(q, k, v, lengths, layout[2], top_k)
    got = torch_decode_attention(q, k, v, lengths, layout[2], top_k)
    assert got.shape == (3, layout[0], layout[4]) and got.dtype == dtype
    assert _error(got, want) < _tolerance(dtype)


@pytest.mark.parametrize("layout", [l for l in LAYOUTS if l[2] % l[1] == 0], ids=_ids)
def test_concat_v_view_equals_reference(layout):
    q, k, v, lengths = _cache(layout, torch.float32)
    want = reference_decode_attention(q, k, v, lengths, layout[2])
    assert _error(concat_v_attention(q, k, v, lengths, layout[2]), want) < 1e-5
    full = torch.full_like(lengths, 150)  # lengths=None: every sequence fills the cache, no mask
    assert _error(concat_v_attention(q, k, v, None, layout[2]), reference_decode_attention(q, k, v, full, layout[2])) < 1e-5


def test_selective_v_with_k_at_least_the_length_is_full_attention():
    q, k, v, lengths = _cache(LAYOUTS[0], torch.float32)
    torch.testing.assert_close(torch_decode_attention(q, k, v, lengths, 16, top_k=150), torch_decode_attention(q, k, v, lengths, 16))
    assert _error(torch_decode_attention(q, k, v, lengths, 16, top_k=4), reference_decode_attention(q, k, v, lengths, 16)) > 0.05


def test_stored_v_rows_put_each_k_groups_v_heads_side_by_side():
    v = torch.arange(2 * 8 * 3 * 4, dtype=torch.float32).view(2, 8, 3, 4)  # (B, n_v, T, d_v)
    from sigma.config import PRESETS
    from sigma.kv_cache import KVCache

    cache = KVCache(PRESETS["sigma-tiny"].replace(n_q_heads=8, n_k_heads=2, n_v_heads=8), 2, 3)
    rows = cache.v_rows(v)
    assert rows.shape == (2, 2, 3, 16)
    torch.testing.assert_close(rows[1, 1, 2, 4:8], v[1, 5, 2])  # K group 1, its second V head
    torch.testing.assert_close(v_heads(rows, 8), v)


@needs_triton
@pytest.mark.parametrize("layout", LAYOUTS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_split_kv_equals_reference(layout, dtype):
    from sigma.kernels.triton_decode import LaunchConfig, split_kv_attention

    q, k, v, lengths = (t.to(DEVICE) for t in _cache(layout, dtype))
    want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), layout[2])
    # 32-position blocks and several splits per sequence: the combine step is exercised
    got = split_kv_attention(q, k, v, lengths, layout[2], LaunchConfig(block_t=32, waves=8))
    assert got.dtype == dtype
    assert _error(got, want) < _tolerance(dtype)


@needs_triton
@pytest.mark.parametrize("layout,dtype,top_ks", [
    (LAYOUTS[0], torch.bfloat16, (20,)),
    (LAYOUTS[4], torch.float32, (20, 100)),  # 100 > 77 and > 1: fewer positions than k in two sequences
    (LAYOUTS[5], torch.bfloat16, (20, 100)),
], ids=lambda p: _ids(p) if isinstance(p, tuple) and len(p) == 5 else str(p))
@pytest.mark.slow
def test_triton_selective_v_equals_reference(layout, dtype, top_ks):
    from sigma.kernels.triton_decode import LaunchConfig, selective_v_attention

    q, k, v, lengths = (t.to(DEVICE) for t in _cache(layout, dtype))
    for top_k in top_ks:
        want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), layout[2], top_k)
        got = selective_v_attention(q, k, v, lengths, layout[2], top_k, LaunchConfig(block_t=32, waves=8))
        assert _error(got, want) < _tolerance(dtype), top_k


@needs_triton
def test_dispatch_reaches_the_triton_kernels():
    q, k, v, lengths = (t.to(DEVICE) for t in _cache(LAYOUTS[1], torch.float32))
    want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), 2)
    assert _error(decode_attention(q, k, v, lengths, 2, backend="triton"), want) < 1e-5
    want = reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), 2, top_k=8)
    assert _error(decode_attention(q, k, v, lengths, 2, backend="triton", top_k=8), want) < 1e-5


@needs_triton
def test_the_kernels_compile_for_hopper():
    """Every decode kernel compiled by Triton for sm_90 (the H100 and H200) at Sigma-1.5B's heads,
    without a GPU (a kernel the interpreter runs can still fail to lower), with its registers and
    spills read from the cubin: none spills."""
    import triton

    if "nvidia" not in triton.backends.backends:
        pytest.skip("this triton has no CUDA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "bench/kernel_resources.py", "--quick"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "│" in line and "DiffQKV" in line]
    kernels = {line.split("│")[2].strip() for line in lines}
    assert kernels == {"split-KV", "combine", "selective V: K pass", "selective V: select"}
    assert all(line.split("│")[8].strip() == "0" for line in lines)  # spill bytes
