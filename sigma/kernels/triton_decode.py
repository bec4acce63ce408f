"""Split-KV decode attention in Triton for unequal K and V heads (FlashDecoding with DiffQKV maps).

One program handles one sequence, one *unit* of query heads and one split of the sequence. A unit
is the smallest run of consecutive query heads closed under both head maps: ``lcm(n_q/n_k,
n_q/n_v)`` heads, reading ``NK`` K heads and ``NV`` V heads that no other unit reads. So every
byte of the cache is read once per step, by one program. Inside a program the unit's K heads are
one wide K row and its V heads one wide V row; each query is placed in its own K head's slot of
an otherwise zero row (a block-diagonal Q), so one tensor-core product gives every query its
scores against its own K head, and one more gives every query the weighted sum of every V head of
the unit, of which only its own slot is stored. The surplus multiply-adds are free: decoding is
bound by memory, not arithmetic. Splits write partial outputs with their log-sum-exp, which a
second kernel combines (Dao et al., "Flash-Decoding for long-context inference", 2023).

Splits are sized from each sequence's current length, inside the kernel: the grid is fixed by
the batch and the GPU (so a CUDA graph captured once serves every step), and a sequence of
length ``L`` is cut into ``n_splits`` pieces of about ``L / n_splits`` positions; splits past
the length exit at once. A cache allocated for 32K positions but holding 1K thus still spreads
its 1K over the whole GPU, where splits sized from the capacity would give it a handful of
programs.

Selective V (Sigma, arXiv 2501.13629, section 2.3), in two kernels, each reading only what it
must. The K pass streams K up to each length as the split-KV kernel does (same grid, same split
sizes) and writes every float32 score (32 query heads: a quarter of K's bf16 bytes) and the
maximum of each group of ``GROUP`` positions. The select kernel, one program per query head,
takes the exact top-k without sorting: the k-th largest group maximum bounds the k-th largest
score from below (k groups reach it), so the top k lie in the groups that reach it, at most
``next_pow2(k)`` of them; among their scores, held in registers, the k-th largest is found by a
radix select on order-preserving integer keys (32 counting rounds), the chosen positions are
packed, and only their V rows are read. Bytes: K, the scores written once, then a few KB per head.

The V cache is stored as ``(B, n_v / R, T, R * d_v)``: ``R`` V heads of one K group side by side
in one row (``R = 1`` is the plain layout), which is also the concat-V view SDPA can read.

Triton's CPU interpreter (``TRITON_INTERPRET=1``) stores bfloat16 as integers and cannot do
arithmetic on it, so under the interpreter the kernels convert loads to float32 first, rounding
the softmax weights to the cache dtype as the GPU path does.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor


@dataclass(frozen=True)
class LaunchConfig:
    block_t: int = 64  # positions per loop iteration
    num_warps: int = 4
    num_stages: int = 3
    waves: int = 4  # aim for about this many programs per SM (sets the number of splits)
    # registers per thread at most (Triton's ``maxnreg``): split-KV at Sigma-1.5B's heads takes 206
    # at 4 warps, two programs per SM; capped at 128 it compiles without spills, four fit
    maxnreg: int | None = None

    def launch_options(self) -> dict:
        options = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        if self.maxnreg and not _interpreting():
            options["maxnreg"] = self.maxnreg
        return options


DEFAULT = LaunchConfig()
# Tuned choices by (kind, n_q, n_k, n_v, d_qk, d_v, batch, capacity bucket), filled by ``bench/decode.py``.
TUNED: dict[tuple, LaunchConfig] = {}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _precision(cache: Tensor) -> str:
    """float32 caches get exact float32 products; bf16 and fp16 ones use tensor cores as they are."""
    return "ieee" if cache.dtype == torch.float32 else "tf32"


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class Layout:
    """The head bookkeeping one launch needs."""

    n_q: int
    n_k: int
    n_v: int
    d_qk: int
    d_v: int
    r: int  # V heads per stored row

    @property
    def unit(self) -> int:
        a, c = self.n_q // self.n_k, self.n_q // self.n_v
        return a * c // math.gcd(a, c)

    @property
    def n_units(self) -> int:
        return self.n_q // self.unit

    def constexprs(self) -> dict[str, int]:
        unit = self.unit
        nk, nv = unit // (self.n_q // self.n_k), unit // (self.n_q // self.n_v)
        return dict(
            A=self.n_q // self.n_k, C=self.n_q // self.n_v, R=self.r, UNIT=unit, M=max(16, _next_pow2(unit)),
            NK=nk, NV=nv, D_QK=self.d_qk, D_V=self.d_v, DK=max(16, _next_pow2(nk * self.d_qk)),
            DV=max(16, _next_pow2(nv * self.d_v)),
        )


def layout_of(q: Tensor, k_cache: Tensor, v_cache: Tensor, n_v: int) -> Layout:
    r = n_v // v_cache.size(1)
    return Layout(q.size(1), k_cache.size(1), n_v, q.size(-1), v_cache.size(-1) // r, r)


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def n_splits_for(layout: Layout, batch: int, capacity: int, config: LaunchConfig, sm_count: int,
                 min_split: int | None = None) -> int:
    """Splits per sequence in the grid: about ``waves`` programs per SM, none shorter than
    ``min_split`` positions (default one block) even when the cache is full."""
    min_split = min_split or config.block_t
    wanted = triton.cdiv(config.waves * sm_count, batch * layout.n_units)
    return max(1, min(triton.cdiv(capacity, min_split), wanted))


def split_size(length: int, n_splits: int, block: int) -> int:
    """Positions per split for a sequence of ``length``: the kernels compute the same in-kernel."""
    return triton.cdiv(triton.cdiv(length, n_splits), block) * block


def working_programs(layout: Layout, batch: int, length: int, n_splits: int, block: int) -> int:
    """Programs of a launch that have positions to read, every sequence at ``length``."""
    if length <= 0:
        return 0
    return batch * layout.n_units * triton.cdiv(length, split_size(length, n_splits, block))


def tuning_key(kind: str, layout: Layout, batch: int, capacity: int) -> tuple:
    """``kind``: "split" (full attention) or "scores" (selective V's K pass)."""
    return (kind, layout.n_q, layout.n_k, layout.n_v, layout.d_qk, layout.d_v, batch, round(math.log2(max(capacity, 1))))


def config_for(kind: str, layout: Layout, batch: int, capacity: int) -> LaunchConfig:
    return TUNED.get(tuning_key(kind, layout, batch, capacity), DEFAULT)


@triton.jit
def _split_kv_kernel(
    Q, K, V, Lengths, OPart, LsePart,
    sqb, sqh, skb, skh, skt, svb, svg, svt, sob, soh, sos, slb, slh,
    n_splits, scale_log2,
    A: tl.constexpr, C: tl.constexpr, R: tl.constexpr, UNIT: tl.constexpr, M: tl.constexpr,
    NK: tl.constexpr, NV: tl.constexpr, D_QK: tl.constexpr, D_V: tl.constexpr, DK: tl.constexpr,
    DV: tl.constexpr, BLOCK_T: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    split = tl.program_id(0)
    unit = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    length = tl.load(Lengths + b)
    split_size = tl.cdiv(tl.cdiv(length, n_splits), BLOCK_T) * BLOCK_T
    lo = split * split_size
    hi = tl.minimum(lo + split_size, length)

    rows = tl.arange(0, M)
    row_ok = rows < UNIT
    heads = unit * UNIT + rows
    kc = tl.arange(0, DK)
    k_slot = kc // D_QK
    kc_ok = kc < NK * D_QK
    k_off = (unit * NK + k_slot).to(tl.int64) * skh + kc % D_QK
    q_mask = row_ok[:, None] & kc_ok[None, :] & (k_slot[None, :] == (rows // A)[:, None])
    q = tl.load(Q + b * sqb + heads[:, None] * sqh + (kc % D_QK)[None, :], mask=q_mask, other=0.0)
    vc = tl.arange(0, DV)
    v_slot = vc // D_V
    vc_ok = vc < NV * D_V
    v_head = unit * NV + v_slot
    v_off = (v_head // R).to(tl.int64) * svg + (v_head % R) * D_V + vc % D_V
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([M], float("-inf"), tl.float32)
    l_i = tl.zeros([M], tl.float32)
    acc = tl.zeros([M, DV], tl.float32)
    for start in range(lo, hi, BLOCK_T):
        t = start + tl.arange(0, BLOCK_T)
        t_ok = t < hi
        kt = tl.load(K + b * skb + t[:, None].to(tl.int64) * skt + k_off[None, :], mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        vt = tl.load(V + b * svb + t[:, None].to(tl.int64) * svt + v_off[None, :], mask=t_ok[:, None] & vc_ok[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, tl.trans(kt), input_precision=PRECISION) * scale_log2
        s = tl.where(t_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        p = p.to(V.dtype.element_ty)
        if UPCAST:
            p = p.to(tl.float32)
            vt = vt.to(tl.float32)
        acc = acc * alpha[:, None] + tl.dot(p, vt, input_precision=PRECISION)
        m_i = m_new

    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    o_mask = row_ok[:, None] & vc_ok[None, :] & (v_slot[None, :] == (rows // C)[:, None])
    tl.store(OPart + b * sob + heads[:, None] * soh + split * sos + (vc % D_V)[None, :], out, mask=o_mask)
    tl.store(LsePart + b * slb + heads * slh + split, lse, mask=row_ok)


@triton.jit
def _combine_kernel(
    OPart, LsePart, Out, sob, soh, sos, slb, slh, sxb, sxh, n_q, n_splits,
    SP: tl.constexpr, D_V: tl.constexpr, DVP: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_q).to(tl.int64)
    h = pid % n_q
    s = tl.arange(0, SP)
    lse = tl.load(LsePart + b * slb + h * slh + s, mask=s < n_splits, other=float("-inf"))
    m = tl.max(lse, 0)
    w = tl.exp2(lse - m)
    d = tl.arange(0, DVP)
    o_mask = (lse > float("-inf"))[:, None] & (d < D_V)[None, :]
    o = tl.load(OPart + b * sob + h * soh + s[:, None] * sos + d[None, :], mask=o_mask, other=0.0)
    out = tl.sum(w[:, None] * o, 0) / tl.sum(w, 0)
    tl.store(Out + b * sxb + h * sxh + d, out.to(Out.dtype.element_ty), mask=d < D_V)


# Selective V: scores as order-preserving unsigned keys, so that the k-th largest is found bit by bit
# (a radix select) with counts alone; key 0 is below every score, -inf included, and marks padding.
@triton.jit
def _key(s):
    bits = s.to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # as int32: the order of the floats
    return ordered.to(tl.uint32, bitcast=True) ^ 0x80000000  # the sign bit flipped: unsigned order


@triton.jit
def _kth_largest_key(keys, k):
    """The ``k``-th largest of ``keys`` (any shape, uint32), or 0 when there are fewer than ``k``
    nonzero keys: the largest ``t`` with ``count(keys >= t) >= k``, built from the top bit down."""
    found = tl.zeros([], dtype=tl.uint32)
    for i in tl.static_range(32):
        trial = found | tl.full([], 1 << (31 - i), tl.uint32)
        found = tl.where(tl.sum((keys >= trial).to(tl.int32)) >= k, trial, found)
    return found


@triton.jit
def _scores_kernel(
    Q, K, Lengths, Scores, GroupMax, sqb, sqh, skb, skh, skt, ssb, ssh, sgb, sgh, n_splits, scale_log2,
    A: tl.constexpr, UNIT: tl.constexpr, M: tl.constexpr, NK: tl.constexpr, D_QK: tl.constexpr,
    DK: tl.constexpr, BLOCK_T: tl.constexpr, G: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """Selective V's K pass: every score up to the length, and the maximum of each group of ``G``."""
    split = tl.program_id(0)
    unit = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    length = tl.load(Lengths + b)
    split_size = tl.cdiv(tl.cdiv(length, n_splits), BLOCK_T) * BLOCK_T
    lo = split * split_size
    hi = tl.minimum(lo + split_size, length)
    rows = tl.arange(0, M)
    row_ok = rows < UNIT
    heads = unit * UNIT + rows
    kc = tl.arange(0, DK)
    k_slot = kc // D_QK
    kc_ok = kc < NK * D_QK
    k_off = (unit * NK + k_slot).to(tl.int64) * skh + kc % D_QK
    q_mask = row_ok[:, None] & kc_ok[None, :] & (k_slot[None, :] == (rows // A)[:, None])
    q = tl.load(Q + b * sqb + heads[:, None] * sqh + (kc % D_QK)[None, :], mask=q_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    s_rows = Scores + b * ssb + heads[:, None].to(tl.int64) * ssh
    g_rows = GroupMax + b * sgb + heads[:, None].to(tl.int64) * sgh
    for start in range(lo, hi, BLOCK_T):
        t = start + tl.arange(0, BLOCK_T)
        t_ok = t < hi
        kt = tl.load(K + b * skb + t[:, None].to(tl.int64) * skt + k_off[None, :], mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, tl.trans(kt), input_precision=PRECISION) * scale_log2
        s = tl.where(t_ok[None, :], s, float("-inf"))
        tl.store(s_rows + t[None, :], s, mask=row_ok[:, None] & t_ok[None, :])
        group_max = tl.max(tl.reshape(s, [M, BLOCK_T // G, G]), axis=2)
        g = start // G + tl.arange(0, BLOCK_T // G)
        tl.store(g_rows + g[None, :], group_max, mask=row_ok[:, None] & (g * G < hi)[None, :])


@triton.jit
def _select_kernel(
    Scores, GroupMax, Lengths, V, Out, Slots, Picked, PickedScores, Positions,
    ssb, ssh, sgb, sgh, svb, svg, svt, sxb, sxh, spb, sph, n_q, top_k,
    G: tl.constexpr, CH: tl.constexpr, NG: tl.constexpr, KP: tl.constexpr, C: tl.constexpr, R: tl.constexpr,
    D_V: tl.constexpr, DVP: tl.constexpr, WRITE_POSITIONS: tl.constexpr,
):
    """One query head of one sequence: the ``top_k`` largest scores, exactly, then their V rows.

    1. ``cut``, the k-th largest group maximum: at least k scores reach it, so every member of the
       top k does, and the groups whose maximum reaches it (k of them but for ties, at most ``NG``
       kept) hold the whole top k.
    2. Those groups' scores, ``NG * G`` in registers, give the k-th largest score itself; the top k
       are the scores above it and the first of those equal to it.
    3. Their positions and scores are packed into ``KP`` slots, their V rows read, the softmax taken
       over them alone.
    Slots, Picked and PickedScores are this program's scratch, read back only where written.
    """
    pid = tl.program_id(0)
    b = (pid // n_q).to(tl.int64)
    h = pid % n_q
    length = tl.load(Lengths + b)
    n_groups = tl.cdiv(length, G)
    g_row = GroupMax + b * sgb + h * sgh
    scratch = pid.to(tl.int64)

    # 1. the k-th largest group maximum, CH groups at a time
    cut = tl.zeros([], dtype=tl.uint32)
    for i in tl.static_range(32):
        trial = cut | tl.full([], 1 << (31 - i), tl.uint32)
        count = tl.zeros([], dtype=tl.int32)
        for c in range(0, n_groups, CH):
            g = c + tl.arange(0, CH)
            keys = tl.where(g < n_groups, _key(tl.load(g_row + g, mask=g < n_groups, other=0.0)), 0)
            count += tl.sum((keys >= trial).to(tl.int32))
        cut = tl.where(count >= top_k, trial, cut)

    # the groups that reach it, their indices packed into Slots
    n_cand = tl.zeros([], dtype=tl.int32)
    for c in range(0, n_groups, CH):
        g = c + tl.arange(0, CH)
        ok = g < n_groups
        reach = ok & (_key(tl.load(g_row + g, mask=ok, other=0.0)) >= cut)
        slot = n_cand + tl.cumsum(reach.to(tl.int32), 0) - 1
        tl.store(Slots + scratch * NG + slot, g, mask=reach & (slot < NG))
        n_cand += tl.sum(reach.to(tl.int32))
    tl.debug_barrier()  # the program's own stores, read back by its other threads

    # 2. the k-th largest score among the candidate groups
    j = tl.arange(0, NG)
    taken = j < tl.minimum(n_cand, NG)
    group = tl.load(Slots + scratch * NG + j, mask=taken, other=0)
    pos = tl.reshape(group[:, None] * G + tl.arange(0, G)[None, :], [NG * G])
    ok = tl.reshape(taken[:, None] & (tl.arange(0, G) < G)[None, :], [NG * G]) & (pos < length)
    s = tl.load(Scores + b * ssb + h * ssh + pos, mask=ok, other=float("-inf"))
    keys = tl.where(ok, _key(s), 0)
    kth = _kth_largest_key(keys, top_k)
    above = keys > kth
    tie = ok & (keys == kth)
    picked = above | (tie & (tl.cumsum(tie.to(tl.int32), 0) <= top_k - tl.sum(above.to(tl.int32))))

    # 3. the picked positions and scores packed into KP slots, then their V rows
    rank = tl.cumsum(picked.to(tl.int32), 0) - 1
    tl.store(Picked + scratch * KP + rank, pos, mask=picked)
    tl.store(PickedScores + scratch * KP + rank, s, mask=picked)
    tl.debug_barrier()
    n_picked = tl.sum(picked.to(tl.int32))
    i = tl.arange(0, KP)
    have = i < n_picked
    p_pos = tl.load(Picked + scratch * KP + i, mask=have, other=0)
    p_s = tl.load(PickedScores + scratch * KP + i, mask=have, other=float("-inf"))
    if WRITE_POSITIONS:
        tl.store(Positions + b * spb + h * sph + i, tl.where(have, p_pos, -1), mask=i < top_k)
    p = tl.exp2(p_s - tl.max(p_s, 0))
    hv = h // C
    d = tl.arange(0, DVP)
    base = V + b * svb + (hv // R).to(tl.int64) * svg + (hv % R) * D_V
    rows = tl.load(base + p_pos[:, None].to(tl.int64) * svt + d[None, :], mask=have[:, None] & (d < D_V)[None, :], other=0.0)
    out = tl.sum(p[:, None] * rows.to(tl.float32), 0) / tl.sum(p, 0)
    tl.store(Out + b * sxb + h * sxh + d, out.to(Out.dtype.element_ty), mask=d < D_V)


def split_kv_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v: int, config: LaunchConfig | None = None,
) -> Tensor:
    """Decode attention: q (B, n_q, d_qk) over the first ``lengths[b]`` positions of the caches."""
    layout = layout_of(q, k_cache, v_cache, n_v)
    batch, capacity = q.size(0), k_cache.size(2)
    config = config or config_for("split", layout, batch, capacity)
    n_splits = n_splits_for(layout, batch, capacity, config, _sm_count(q.device))
    consts = layout.constexprs()
    o_part = torch.empty(batch, layout.n_q, n_splits, layout.d_v, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(batch, layout.n_q, n_splits, device=q.device, dtype=torch.float32)
    q = q.contiguous()
    _split_kv_kernel[(n_splits, layout.n_units, batch)](
        q, k_cache, v_cache, lengths, o_part, lse_part,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse_part.stride(0), lse_part.stride(1),
        n_splits, math.log2(math.e) / math.sqrt(layout.d_qk),
        **consts, BLOCK_T=config.block_t, UPCAST=_interpreting(), PRECISION=_precision(k_cache),
        **config.launch_options(),
    )
    out = torch.empty(batch, layout.n_q, layout.d_v, device=q.device, dtype=q.dtype)
    _combine_kernel[(batch * layout.n_q,)](
        o_part, lse_part, out, o_part.stride(0), o_part.stride(1), o_part.stride(2),
        lse_part.stride(0), lse_part.stride(1), out.stride(0), out.stride(1), layout.n_q, n_splits,
        SP=max(2, _next_pow2(n_splits)), D_V=layout.d_v, DVP=max(16, _next_pow2(layout.d_v)), num_warps=4,
    )
    return out


GROUP = 32  # selective V: positions per group, whose maxima make the first cut
GROUP_CHUNK = 1024  # group maxima the select kernel holds at once


@dataclass
class SelectiveWorkspace:
    """Selective V's buffers for one shape: scores, group maxima and per-head scratch. Reusable
    from call to call (a decode step's layers, a CUDA graph's replays): every element read was
    written by the same call."""

    scores: Tensor  # (B, n_q, capacity) float32, log2-scaled
    group_max: Tensor  # (B, n_q, capacity / GROUP) float32
    slots: Tensor  # (B * n_q, NG) int32: candidate groups
    picked: Tensor  # (B * n_q, KP) int32: chosen positions
    picked_scores: Tensor  # (B * n_q, KP) float32

    @classmethod
    def allocate(cls, batch: int, n_q: int, capacity: int, top_k: int, device) -> "SelectiveWorkspace":
        kp = max(16, _next_pow2(top_k))
        return cls(
            torch.empty(batch, n_q, capacity, device=device, dtype=torch.float32),
            torch.empty(batch, n_q, triton.cdiv(capacity, GROUP), device=device, dtype=torch.float32),
            torch.empty(batch * n_q, kp, device=device, dtype=torch.int32),
            torch.empty(batch * n_q, kp, device=device, dtype=torch.int32),
            torch.empty(batch * n_q, kp, device=device, dtype=torch.float32),
        )

    def fits(self, batch: int, n_q: int, capacity: int, top_k: int) -> bool:
        return self.scores.shape == (batch, n_q, capacity) and self.picked.size(1) == max(16, _next_pow2(top_k))


def score_pass(
    q: Tensor, k_cache: Tensor, lengths: Tensor, layout: Layout, work: SelectiveWorkspace,
    config: LaunchConfig | None = None,
) -> None:
    """Selective V's K pass: K read once up to each length, its scores and group maxima written."""
    batch, capacity = q.size(0), k_cache.size(2)
    config = config or config_for("scores", layout, batch, capacity)
    block_t = max(config.block_t, GROUP)
    n_splits = n_splits_for(layout, batch, capacity, config, _sm_count(q.device), min_split=block_t)
    consts = layout.constexprs()
    q = q.contiguous()
    _scores_kernel[(n_splits, layout.n_units, batch)](
        q, k_cache, lengths, work.scores, work.group_max, q.stride(0), q.stride(1), k_cache.stride(0),
        k_cache.stride(1), k_cache.stride(2), work.scores.stride(0), work.scores.stride(1),
        work.group_max.stride(0), work.group_max.stride(1), n_splits, math.log2(math.e) / math.sqrt(layout.d_qk),
        A=consts["A"], UNIT=consts["UNIT"], M=consts["M"], NK=consts["NK"], D_QK=layout.d_qk, DK=consts["DK"],
        BLOCK_T=block_t, G=GROUP, UPCAST=_interpreting(), PRECISION=_precision(k_cache),
        **config.launch_options(),
    )


def select_values(
    work: SelectiveWorkspace, lengths: Tensor, v_cache: Tensor, layout: Layout, top_k: int, dtype: torch.dtype,
    positions: Tensor | None = None,
) -> Tensor:
    """The ``top_k`` largest scores per query head, the softmax over them and their V rows only;
    (B, n_q, d_v). ``positions`` (B, n_q, top_k) int32, when given, receives the chosen positions
    in order of position, then -1 where a sequence holds fewer than ``top_k``."""
    batch, n_q, _ = work.scores.shape
    ng = kp = work.picked.size(1)
    out = torch.empty(batch, n_q, layout.d_v, device=v_cache.device, dtype=dtype)
    pos = positions if positions is not None else out  # not written unless asked for
    _select_kernel[(batch * n_q,)](
        work.scores, work.group_max, lengths, v_cache, out, work.slots, work.picked, work.picked_scores, pos,
        work.scores.stride(0), work.scores.stride(1), work.group_max.stride(0), work.group_max.stride(1),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), out.stride(0), out.stride(1),
        pos.stride(0), pos.stride(1), n_q, top_k, G=GROUP, CH=GROUP_CHUNK, NG=ng, KP=kp, C=layout.n_q // layout.n_v,
        R=layout.r, D_V=layout.d_v, DVP=max(16, _next_pow2(layout.d_v)), WRITE_POSITIONS=positions is not None,
        num_warps=4,  # 4096 candidates for k = 100 in registers: about 210 a thread on sm_90, no spills
    )
    return out


def selective_v_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v: int, top_k: int,
    config: LaunchConfig | None = None, positions: Tensor | None = None, work: SelectiveWorkspace | None = None,
) -> Tensor:
    """Read K up to each length, keep the ``top_k`` scores per query head, read only those V rows."""
    layout = layout_of(q, k_cache, v_cache, n_v)
    batch, capacity = q.size(0), k_cache.size(2)
    if work is None or not work.fits(batch, layout.n_q, capacity, top_k):
        work = SelectiveWorkspace.allocate(batch, layout.n_q, capacity, top_k, q.device)
    score_pass(q, k_cache, lengths, layout, work, config)
    return select_values(work, lengths, v_cache, layout, top_k, q.dtype, positions)
