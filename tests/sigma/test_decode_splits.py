"""The Triton decode kernels on caches far larger than what they hold, as the engine allocates them.

Splits are sized from each sequence's length, not the cache's capacity, and selective V reads K
only up to the length; these tests check both against the float64 and torch references (Triton's
CPU interpreter when there is no GPU; skipped without triton).
"""

import importlib.util
import itertools
import os

import pytest
import torch

from sigma.kernels.decode import reference_decode_attention

HAS_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if HAS_TRITON and DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined, at first import
pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

LENGTHS = [300, 1, 77]


def _sparse_cache(n_q, n_k, n_v, d, capacity, seed=0):
    """A cache of ``capacity`` positions holding LENGTHS; the unused end is NaN, so a read past a
    length would show in the output."""
    gen = torch.Generator().manual_seed(seed)
    r = n_v // n_k
    q = torch.randn(len(LENGTHS), n_q, d, generator=gen) * 2
    k = torch.full((len(LENGTHS), n_k, capacity, d), float("nan"))
    v = torch.full((len(LENGTHS), n_v // r, capacity, r * d), float("nan"))
    for b, length in enumerate(LENGTHS):
        k[b, :, :length] = torch.randn(n_k, length, d, generator=gen)
        v[b, :, :length] = torch.randn(n_v // r, length, r * d, generator=gen)
    return q.to(DEVICE), k.to(DEVICE), v.to(DEVICE), torch.tensor(LENGTHS, dtype=torch.int32, device=DEVICE)


def _reference(q, k, v, lengths, n_v, top_k=None):
    return reference_decode_attention(q.cpu(), k.cpu(), v.cpu(), lengths.cpu(), n_v, top_k)


def test_split_kv_with_capacity_far_beyond_the_length_equals_reference():
    from sigma.kernels.triton_decode import LaunchConfig, split_kv_attention

    q, k, v, lengths = _sparse_cache(8, 2, 4, 16, capacity=4096)
    got = split_kv_attention(q, k, v, lengths, 4, LaunchConfig(block_t=32, waves=8))
    want = _reference(q, k, v, lengths, 4)
    assert torch.isfinite(got).all()
    assert ((got.double().cpu() - want).abs().max() / want.abs().max()).item() < 1e-5


def test_splits_follow_the_length_not_the_capacity():
    """Batch 1 of Sigma-1.5B's heads on a 132-SM GPU, 1,024 positions held in a 32K cache: every
    SM gets work. Splits cut from the capacity would give 16 programs (4 units x 4 splits)."""
    from sigma.kernels.triton_decode import DEFAULT, Layout, n_splits_for, working_programs

    layout = Layout(32, 4, 16, 64, 64, 4)
    n_splits = n_splits_for(layout, 1, 32768 + 256, DEFAULT, sm_count=132)
    assert working_programs(layout, 1, 1024, n_splits, DEFAULT.block_t) == 4 * 16  # one block each: all there is
    assert working_programs(layout, 1, 8192, n_splits, DEFAULT.block_t) >= 132
    assert working_programs(layout, 1, 32768, n_splits, DEFAULT.block_t) >= 4 * 132 * 0.9
    assert working_programs(layout, 8, 32768, n_splits_for(layout, 8, 32768, DEFAULT, 132), DEFAULT.block_t) >= 4 * 132 * 0.9


def test_selective_v_chooses_the_reference_rows_and_reads_only_the_length():
    from sigma.kernels.triton_decode import LaunchConfig, selective_v_attention

    n_q, n_k, n_v, d, top_k = 8, 2, 4, 16, 10  # 16 candidates per split, splits of 128: three for 300
    q, k, v, lengths = _sparse_cache(n_q, n_k, n_v, d, capacity=2048, seed=1)
    positions = torch.full((len(LENGTHS), n_q, top_k), -7, dtype=torch.int32, device=DEVICE)
    got = selective_v_attention(q, k, v, lengths, n_v, top_k, LaunchConfig(waves=8), positions=positions)
    want = _reference(q, k, v, lengths, n_v, top_k)
    assert ((got.double().cpu() - want).abs().max() / want.abs().max()).item() < 1e-5
    positions = positions.cpu()
    for b, length in enumerate(LENGTHS):
        for h in range(n_q):
            scores = k[b, h // (n_q // n_k), :length].double().cpu() @ q[b, h].double().cpu()
            chosen = sorted(scores.topk(min(top_k, length)).indices.tolist())
            got_rows = positions[b, h]
            assert sorted(got_rows[got_rows >= 0].tolist()) == chosen, (b, h)
            assert (got_rows[len(chosen):] == -1).all()


def test_selective_v_is_exact_over_chunks_and_ties_and_reads_only_what_it_wrote(monkeypatch):
    """The select kernel's group maxima in several chunks, exact ties at the top (the earliest
    positions win, as a stable top-k picks), and every scratch buffer poisoned first: what it
    reads, it wrote in the same call."""
    from sigma.kernels import triton_decode as td

    monkeypatch.setattr(td, "GROUP_CHUNK", 4)  # 300 positions: 10 groups of 32, in 3 chunks
    n_q, n_k, n_v, d, top_k = 8, 2, 4, 16, 10
    q, k, v, lengths = _sparse_cache(n_q, n_k, n_v, d, capacity=512, seed=2)
    q[0, 4:8] = q[0, 4]  # the query heads of K head 1, sequence 0, all alike ...
    k[0, 1, 40:70] = q[0, 4].sign() * 3  # ... and 30 positions of K head 1 tie far above the rest
    work = td.SelectiveWorkspace.allocate(len(LENGTHS), n_q, 512, top_k, DEVICE)
    for buffer in (work.scores, work.group_max, work.picked_scores):
        buffer.fill_(float("nan"))
    for buffer in (work.slots, work.picked):
        buffer.fill_(1_000_000)
    positions = torch.full((len(LENGTHS), n_q, top_k), -7, dtype=torch.int32, device=DEVICE)
    got = td.selective_v_attention(q, k, v, lengths, n_v, top_k, td.LaunchConfig(waves=8), positions=positions, work=work)
    got, positions = got.double().cpu(), positions.cpu()
    want = _reference(q, k, v, lengths, n_v, top_k)
    for b, h in itertools.product(range(len(LENGTHS)), range(n_q)):
        if b == 0 and h >= 4:  # the first 10 of 30 equal scores, weighted equally
            assert positions[0, h].tolist() == list(range(40, 50)), h
            hv = h // 2
            rows = v[0, hv // 2, 40:50, (hv % 2) * d : (hv % 2 + 1) * d].double().cpu()
            torch.testing.assert_close(got[0, h], rows.mean(0), rtol=1e-5, atol=1e-5)
        else:
            assert ((got[b, h] - want[b, h]).abs().max() / want[b, h].abs().max()).item() < 1e-5, (b, h)
