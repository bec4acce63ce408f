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

Selective V (Sigma, arXiv 2501.13629, section 2.3): a scores kernel reads all of K and writes
each query's scores, ``torch.topk`` picks the ``top_k`` largest per query head, and a gather
kernel reads only those V rows and softmaxes over the selected scores.

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


def splits_for(layout: Layout, batch: int, capacity: int, config: LaunchConfig, device: torch.device) -> tuple[int, int]:
    """(number of splits, positions per split) for a cache of ``capacity`` positions."""
    blocks = triton.cdiv(capacity, config.block_t)
    wanted = triton.cdiv(config.waves * _sm_count(device), batch * layout.n_units)
    splits = max(1, min(blocks, wanted))
    split_size = triton.cdiv(blocks, splits) * config.block_t
    return triton.cdiv(capacity, split_size), split_size


def tuning_key(kind: str, layout: Layout, batch: int, capacity: int) -> tuple:
    """``kind``: "split" (full attention) or "scores" (selective V's K pass)."""
    return (kind, layout.n_q, layout.n_k, layout.n_v, layout.d_qk, layout.d_v, batch, round(math.log2(max(capacity, 1))))


def config_for(kind: str, layout: Layout, batch: int, capacity: int) -> LaunchConfig:
    return TUNED.get(tuning_key(kind, layout, batch, capacity), DEFAULT)


@triton.jit
def _split_kv_kernel(
    Q, K, V, Lengths, OPart, LsePart,
    sqb, sqh, skb, skh, skt, svb, svg, svt, sob, soh, sos, slb, slh,
    split_size, scale_log2,
    A: tl.constexpr, C: tl.constexpr, R: tl.constexpr, UNIT: tl.constexpr, M: tl.constexpr,
    NK: tl.constexpr, NV: tl.constexpr, D_QK: tl.constexpr, D_V: tl.constexpr, DK: tl.constexpr,
    DV: tl.constexpr, BLOCK_T: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    split = tl.program_id(0)
    unit = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    length = tl.load(Lengths + b)
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


@triton.jit
def _scores_kernel(
    Q, K, Lengths, Scores, sqb, sqh, skb, skh, skt, ssb, ssh, split_size, capacity, scale_log2,
    A: tl.constexpr, UNIT: tl.constexpr, M: tl.constexpr, NK: tl.constexpr, D_QK: tl.constexpr,
    DK: tl.constexpr, BLOCK_T: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    split = tl.program_id(0)
    unit = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    length = tl.load(Lengths + b)
    lo = split * split_size
    hi = tl.minimum(lo + split_size, capacity)
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
    for start in range(lo, hi, BLOCK_T):
        t = start + tl.arange(0, BLOCK_T)
        t_ok = t < length
        kt = tl.load(K + b * skb + t[:, None].to(tl.int64) * skt + k_off[None, :], mask=t_ok[:, None] & kc_ok[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, tl.trans(kt), input_precision=PRECISION) * scale_log2
        s = tl.where(t_ok[None, :], s, float("-inf"))
        tl.store(Scores + b * ssb + heads[:, None] * ssh + t[None, :], s, mask=row_ok[:, None] & (t < hi)[None, :])


@triton.jit
def _selected_values_kernel(
    Vals, Idx, V, Out, sab, sah, svb, svg, svt, sxb, sxh, n_q, top_k,
    KP: tl.constexpr, C: tl.constexpr, R: tl.constexpr, D_V: tl.constexpr, DVP: tl.constexpr,
):
    pid = tl.program_id(0)
    b = (pid // n_q).to(tl.int64)
    h = pid % n_q
    i = tl.arange(0, KP)
    s = tl.load(Vals + b * sab + h * sah + i, mask=i < top_k, other=float("-inf"))
    pos = tl.load(Idx + b * sab + h * sah + i, mask=i < top_k, other=0)
    m = tl.max(s, 0)
    p = tl.exp2(s - m)
    hv = h // C
    d = tl.arange(0, DVP)
    base = V + b * svb + (hv // R).to(tl.int64) * svg + (hv % R) * D_V
    rows = tl.load(base + pos[:, None] * svt + d[None, :], mask=(s > float("-inf"))[:, None] & (d < D_V)[None, :], other=0.0)
    out = tl.sum(p[:, None] * rows.to(tl.float32), 0) / tl.sum(p, 0)
    tl.store(Out + b * sxb + h * sxh + d, out.to(Out.dtype.element_ty), mask=d < D_V)


def split_kv_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v: int, config: LaunchConfig | None = None,
) -> Tensor:
    """Decode attention: q (B, n_q, d_qk) over the first ``lengths[b]`` positions of the caches."""
    layout = layout_of(q, k_cache, v_cache, n_v)
    batch, capacity = q.size(0), k_cache.size(2)
    config = config or config_for("split", layout, batch, capacity)
    n_splits, split_size = splits_for(layout, batch, capacity, config, q.device)
    consts = layout.constexprs()
    o_part = torch.empty(batch, layout.n_q, n_splits, layout.d_v, device=q.device, dtype=torch.float32)
    lse_part = torch.empty(batch, layout.n_q, n_splits, device=q.device, dtype=torch.float32)
    q = q.contiguous()
    _split_kv_kernel[(n_splits, layout.n_units, batch)](
        q, k_cache, v_cache, lengths, o_part, lse_part,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        o_part.stride(0), o_part.stride(1), o_part.stride(2), lse_part.stride(0), lse_part.stride(1),
        split_size, math.log2(math.e) / math.sqrt(layout.d_qk),
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


def attention_scores(
    q: Tensor, k_cache: Tensor, lengths: Tensor, layout: Layout, config: LaunchConfig | None = None,
) -> Tensor:
    """Scaled scores in log2 units (B, n_q, capacity), -inf past each sequence's length."""
    batch, capacity = q.size(0), k_cache.size(2)
    config = config or config_for("scores", layout, batch, capacity)
    n_splits, split_size = splits_for(layout, batch, capacity, config, q.device)
    consts = layout.constexprs()
    scores = torch.empty(batch, layout.n_q, capacity, device=q.device, dtype=torch.float32)
    q = q.contiguous()
    _scores_kernel[(n_splits, layout.n_units, batch)](
        q, k_cache, lengths, scores, q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1),
        k_cache.stride(2), scores.stride(0), scores.stride(1), split_size, capacity,
        math.log2(math.e) / math.sqrt(layout.d_qk),
        A=consts["A"], UNIT=consts["UNIT"], M=consts["M"], NK=consts["NK"], D_QK=layout.d_qk, DK=consts["DK"],
        BLOCK_T=config.block_t, UPCAST=_interpreting(), PRECISION=_precision(k_cache), num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return scores


def selected_values(vals: Tensor, idx: Tensor, v_cache: Tensor, layout: Layout, dtype: torch.dtype) -> Tensor:
    """Softmax over the selected log2 scores ``vals`` (B, n_q, k) times the V rows at ``idx``."""
    batch, n_q, top_k = vals.shape
    out = torch.empty(batch, n_q, layout.d_v, device=vals.device, dtype=dtype)
    vals, idx = vals.contiguous(), idx.contiguous()
    _selected_values_kernel[(batch * n_q,)](
        vals, idx, v_cache, out, vals.stride(0), vals.stride(1), v_cache.stride(0), v_cache.stride(1),
        v_cache.stride(2), out.stride(0), out.stride(1), n_q, top_k,
        KP=max(16, _next_pow2(top_k)), C=layout.n_q // layout.n_v, R=layout.r, D_V=layout.d_v,
        DVP=max(16, _next_pow2(layout.d_v)), num_warps=4,
    )
    return out


def selective_v_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v: int, top_k: int,
    config: LaunchConfig | None = None,
) -> Tensor:
    """Read all of K, keep the ``top_k`` scores per query head, read only those V rows."""
    layout = layout_of(q, k_cache, v_cache, n_v)
    scores = attention_scores(q, k_cache, lengths, layout, config)
    vals, idx = scores.topk(min(top_k, scores.size(-1)), dim=-1, sorted=False)
    return selected_values(vals, idx, v_cache, layout, q.dtype)
