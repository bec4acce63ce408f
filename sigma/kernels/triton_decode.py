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

Selective V (Sigma, arXiv 2501.13629, section 2.3), in two kernels and nothing capacity-sized:
the candidates kernel reads K up to each sequence's length and keeps, per query head and split,
the ``KP = next_pow2(top_k)`` best (score, position) pairs, packed into one int64 so that a
bitonic network carries the position with the score; the values kernel merges the
splits' candidates into the ``top_k`` best per query head (exact: a member of the global top-k
is in its own split's top-k), softmaxes over them and reads only their V rows. Splits are at
least ``SELECT_SPLIT_BLOCKS * KP`` positions long, so the candidates are at most an eighth of the
length.

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


DEFAULT = LaunchConfig()
SELECT_SPLIT_BLOCKS = 8  # selective V: positions per split at least this many top-k blocks
# Tuned choices by (n_q, n_k, n_v, d_qk, d_v, batch, capacity bucket), filled by ``tune``.
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


def split_size(length: int, n_splits: int, block: int, min_split: int = 0) -> int:
    """Positions per split for a sequence of ``length``: the kernels compute the same in-kernel."""
    return max(triton.cdiv(triton.cdiv(length, n_splits), block) * block, min_split)


def working_programs(layout: Layout, batch: int, length: int, n_splits: int, block: int, min_split: int = 0) -> int:
    """Programs of a launch that have positions to read, every sequence at ``length``."""
    if length <= 0:
        return 0
    return batch * layout.n_units * triton.cdiv(length, split_size(length, n_splits, block, min_split))


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


# Selective V keys: a float32 score's bits made order-preserving as int32, in the high half of an
# int64 whose low half is the position; SENTINEL is (-inf, position 0), below every real key.
SENTINEL = tl.constexpr(-9187343243723587584)


@triton.jit
def _pack(s, t):
    bits = s.to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | t.to(tl.int64)


@triton.jit
def _unpack(key):
    ordered = (key >> 32).to(tl.int32)
    bits = ordered ^ ((ordered >> 31) & 0x7FFFFFFF)
    return bits.to(tl.float32, bitcast=True), key.to(tl.int32)  # the low half: the position


# Bitonic sorting networks over rows of power-of-two length, the tensor viewed as a hypercube of
# side 2 (as tl.sort does); each compare-and-swap is a min and a max over one axis of size 2,
# which Triton's CPU interpreter also runs quickly (tl.sort's xor-sum it runs element by element).
@triton.jit
def _indicator(n_dims: tl.constexpr, j: tl.constexpr):
    return tl.reshape(tl.arange(0, 2), [1] * (n_dims - j - 1) + [2] + [1] * j)


@triton.jit
def _compare_swap(h, flip, i: tl.constexpr, n_dims: tl.constexpr):
    """Order each pair along the ``i``-th innermost axis: ascending where ``flip`` is 0."""
    lo = tl.min(h, axis=n_dims - 1 - i, keep_dims=True)
    hi = tl.max(h, axis=n_dims - 1 - i, keep_dims=True)
    return tl.where((flip ^ _indicator(n_dims, i)) != 0, hi, lo)


@triton.jit
def _bitonic_pass(h, stage: tl.constexpr, order: tl.constexpr, n_dims: tl.constexpr):
    """``stage`` rounds of compare-and-swap; order 0 ascending, 1 descending, 2 alternating runs."""
    if order == 2:
        flip = _indicator(n_dims, stage)
    else:
        flip = order
    for r in tl.static_range(stage):
        h = _compare_swap(h, flip, stage - 1 - r, n_dims)
    return h


@triton.jit
def _sort_rows_ascending(x, LOG_N: tl.constexpr, N_DIMS: tl.constexpr):
    h = tl.reshape(x, [2] * N_DIMS)
    for stage in tl.static_range(1, LOG_N + 1):
        h = _bitonic_pass(h, stage, 2 if stage < LOG_N else 0, N_DIMS)
    return tl.reshape(h, x.shape)


@triton.jit
def _top_half(desc, asc, LOG_N: tl.constexpr, N_DIMS: tl.constexpr):
    """The larger half of two sorted rows (one descending, one ascending), sorted descending:
    their elementwise maximum is a bitonic row holding it (Batcher), which one merge sorts."""
    h = tl.reshape(tl.maximum(desc, asc), [2] * N_DIMS)
    return tl.reshape(_bitonic_pass(h, LOG_N, 1, N_DIMS), desc.shape)


@triton.jit
def _candidates_kernel(
    Q, K, Lengths, Keys, sqb, sqh, skb, skh, skt, seb, seh, ses, n_splits, scale_log2,
    A: tl.constexpr, UNIT: tl.constexpr, M: tl.constexpr, NK: tl.constexpr, D_QK: tl.constexpr,
    DK: tl.constexpr, KP: tl.constexpr, LOG_KP: tl.constexpr, LOG_M: tl.constexpr, MIN_SPLIT: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    split = tl.program_id(0)
    unit = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    length = tl.load(Lengths + b)
    split_size = tl.maximum(tl.cdiv(tl.cdiv(length, n_splits), KP) * KP, MIN_SPLIT)
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
    best = tl.full([M, KP], SENTINEL, tl.int64)  # each row sorted descending
    for start in range(lo, hi, KP):
        t = start + tl.arange(0, KP)
        t_ok = t < hi
        kt = tl.load(K + b * skb + t[:, None].to(tl.int64) * skt + k_off[None, :], mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, tl.trans(kt), input_precision=PRECISION) * scale_log2
        keys = tl.where(t_ok[None, :] & row_ok[:, None], _pack(s, t[None, :]), SENTINEL)
        keys = _sort_rows_ascending(keys, LOG_KP, LOG_M + LOG_KP)
        best = _top_half(best, keys, LOG_KP, LOG_M + LOG_KP)
    slots = tl.arange(0, KP)
    tl.store(Keys + b * seb + heads[:, None] * seh + split * ses + slots[None, :], best, mask=row_ok[:, None] & (lo + 0 * slots < length)[None, :])


@triton.jit
def _selected_values_kernel(
    Keys, Lengths, V, Out, Pos, seb, seh, ses, svb, svg, svt, sxb, sxh, spb, sph, n_q, n_splits, top_k,
    KP: tl.constexpr, LOG_KP: tl.constexpr, MIN_SPLIT: tl.constexpr, C: tl.constexpr, R: tl.constexpr,
    D_V: tl.constexpr, DVP: tl.constexpr, WRITE_POSITIONS: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_q).to(tl.int64)
    h = pid % n_q
    length = tl.load(Lengths + b)
    split_size = tl.maximum(tl.cdiv(tl.cdiv(length, n_splits), KP) * KP, MIN_SPLIT)
    slots = tl.arange(0, KP)
    best = tl.full([KP], SENTINEL, tl.int64)
    for split in range(0, tl.cdiv(length, split_size)):
        ascending = tl.load(Keys + b * seb + h * seh + split * ses + (KP - 1 - slots))  # stored descending
        best = _top_half(best, ascending, LOG_KP, LOG_KP)
    s, pos = _unpack(best)  # sorted, best first
    s = tl.where(slots < top_k, s, float("-inf"))
    chosen = s > float("-inf")
    if WRITE_POSITIONS:
        tl.store(Pos + b * spb + h * sph + slots, tl.where(chosen, pos, -1), mask=slots < top_k)
    m = tl.max(s, 0)
    p = tl.exp2(s - m)
    hv = h // C
    d = tl.arange(0, DVP)
    base = V + b * svb + (hv // R).to(tl.int64) * svg + (hv % R) * D_V
    rows = tl.load(base + pos[:, None].to(tl.int64) * svt + d[None, :], mask=chosen[:, None] & (d < D_V)[None, :], other=0.0)
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
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    out = torch.empty(batch, layout.n_q, layout.d_v, device=q.device, dtype=q.dtype)
    _combine_kernel[(batch * layout.n_q,)](
        o_part, lse_part, out, o_part.stride(0), o_part.stride(1), o_part.stride(2),
        lse_part.stride(0), lse_part.stride(1), out.stride(0), out.stride(1), layout.n_q, n_splits,
        SP=max(2, _next_pow2(n_splits)), D_V=layout.d_v, DVP=max(16, _next_pow2(layout.d_v)), num_warps=4,
    )
    return out


def top_k_candidates(
    q: Tensor, k_cache: Tensor, lengths: Tensor, layout: Layout, top_k: int, config: LaunchConfig | None = None,
) -> tuple[Tensor, int]:
    """Selective V's K pass: per query head and split, the best ``next_pow2(top_k)`` packed
    (score, position) keys, (B, n_q, n_splits, KP) int64, written only for splits holding positions."""
    batch, capacity = q.size(0), k_cache.size(2)
    config = config or config_for("scores", layout, batch, capacity)
    kp = max(16, _next_pow2(top_k))
    n_splits = n_splits_for(layout, batch, capacity, config, _sm_count(q.device), min_split=SELECT_SPLIT_BLOCKS * kp)
    consts = layout.constexprs()
    keys = torch.empty(batch, layout.n_q, n_splits, kp, device=q.device, dtype=torch.int64)
    q = q.contiguous()
    _candidates_kernel[(n_splits, layout.n_units, batch)](
        q, k_cache, lengths, keys, q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
        k_cache.stride(2), keys.stride(0), keys.stride(1), keys.stride(2), n_splits,
        math.log2(math.e) / math.sqrt(layout.d_qk),
        A=consts["A"], UNIT=consts["UNIT"], M=consts["M"], NK=consts["NK"], D_QK=layout.d_qk, DK=consts["DK"],
        KP=kp, LOG_KP=kp.bit_length() - 1, LOG_M=consts["M"].bit_length() - 1, MIN_SPLIT=SELECT_SPLIT_BLOCKS * kp,
        UPCAST=_interpreting(), PRECISION=_precision(k_cache),
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return keys, n_splits


def selected_values(
    keys: Tensor, lengths: Tensor, v_cache: Tensor, layout: Layout, top_k: int, dtype: torch.dtype,
    positions: Tensor | None = None,
) -> Tensor:
    """Merge the splits' candidates into the ``top_k`` best per query head, softmax over them and
    read only their V rows; (B, n_q, d_v). ``positions`` (B, n_q, top_k) int32, when given,
    receives the chosen positions (-1 where a sequence has fewer than ``top_k``)."""
    batch, n_q, n_splits, kp = keys.shape
    out = torch.empty(batch, n_q, layout.d_v, device=keys.device, dtype=dtype)
    pos = positions if positions is not None else out  # not written unless asked for
    _selected_values_kernel[(batch * n_q,)](
        keys, lengths, v_cache, out, pos, keys.stride(0), keys.stride(1), keys.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), out.stride(0), out.stride(1),
        pos.stride(0), pos.stride(1), n_q, n_splits, top_k,
        KP=kp, LOG_KP=kp.bit_length() - 1, MIN_SPLIT=SELECT_SPLIT_BLOCKS * kp, C=layout.n_q // layout.n_v, R=layout.r, D_V=layout.d_v,
        DVP=max(16, _next_pow2(layout.d_v)), WRITE_POSITIONS=positions is not None, num_warps=4,
    )
    return out


def selective_v_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v: int, top_k: int,
    config: LaunchConfig | None = None, positions: Tensor | None = None,
) -> Tensor:
    """Read K up to each length, keep the ``top_k`` scores per query head, read only those V rows."""
    layout = layout_of(q, k_cache, v_cache, n_v)
    keys, _ = top_k_candidates(q, k_cache, lengths, layout, top_k, config)
    return selected_values(keys, lengths, v_cache, layout, top_k, q.dtype, positions)
