"""Decode attention over the asymmetric KV cache: one new query per sequence against its cache.

Shapes: q (B, n_q, d_qk); k_cache (B, n_k, T, d_qk); v_cache (B, n_v / R, T, R * d_v), the V heads of
one K group stored side by side in one row when ``R = n_v / n_k`` (``sigma.kv_cache``); lengths
(B,) int32, the valid positions of each sequence. Query head ``h`` reads K head ``h // (n_q/n_k)``
and V head ``h // (n_q/n_v)`` (Sigma, arXiv 2501.13629).

Backends:

- ``triton``: the split-KV kernel (``sigma.kernels.triton_decode``), each cache byte read once;
- ``torch``: plain torch, correct on any device; what the CPU runs;
- ``concat-v``: ``scaled_dot_product_attention`` over the concat-V view (each K group's V heads as
  one wide head), i.e. any GQA decode kernel with ``n_k`` KV heads; needs ``R = n_v / n_k``.

``top_k`` turns on selective V fetching (Sigma, section 2.3): every K row is read, the ``top_k``
largest scores per query head are kept, and the softmax runs over those only (top-k attention,
Gupta et al. 2021), so only their V rows are read. ``reference_decode_attention`` is the
definition in float64.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "triton", "torch", "concat-v")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown decode attention backend {backend!r}; one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    return backend


def decode_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v_heads: int, *,
    top_k: int | None = None, backend: str = "auto", max_length: int | None = None, workspace=None,
) -> Tensor:
    """Attention of one query per sequence over its cache; (B, n_q, d_v).

    ``max_length`` (a host int >= every length) lets the torch paths skip the unused end of the
    cache; the Triton kernels stop at each sequence's own length anyway. ``workspace`` (from
    ``selective_workspace``) lets selective V reuse its buffers from call to call.
    """
    backend = resolve_backend(backend, q.device)
    if backend == "triton":
        from sigma.kernels import triton_decode

        if top_k:
            return triton_decode.selective_v_attention(q, k_cache, v_cache, lengths, n_v_heads, top_k, work=workspace)
        return triton_decode.split_kv_attention(q, k_cache, v_cache, lengths, n_v_heads)
    if max_length is not None:
        k_cache, v_cache = k_cache[:, :, :max_length], v_cache[:, :, :max_length]
    if backend == "concat-v":
        if top_k:
            raise ValueError("selective V fetching needs the triton or torch backend")
        return concat_v_attention(q, k_cache, v_cache, lengths, n_v_heads)
    return torch_decode_attention(q, k_cache, v_cache, lengths, n_v_heads, top_k)


def selective_workspace(batch: int, n_q: int, capacity: int, top_k: int, device: torch.device):
    """Buffers for the Triton selective-V kernels of one decode shape, reusable by every layer."""
    from sigma.kernels.triton_decode import SelectiveWorkspace

    return SelectiveWorkspace.allocate(batch, n_q, capacity, top_k, device)


def v_heads(v_cache: Tensor, n_v_heads: int) -> Tensor:
    """The V cache as (B, n_v, T, d_v), one head per row (a copy when rows hold several heads)."""
    batch, rows, seq, width = v_cache.shape
    r = n_v_heads // rows
    if r == 1:
        return v_cache
    return v_cache.view(batch, rows, seq, r, width // r).transpose(2, 3).reshape(batch, n_v_heads, seq, width // r)


def _valid(lengths: Tensor, seq: int) -> Tensor:
    return torch.arange(seq, device=lengths.device) < lengths.view(-1, 1, 1)  # (B, 1, T)


def torch_decode_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v_heads: int, top_k: int | None = None
) -> Tensor:
    batch, n_q, d_qk = q.shape
    n_k, seq = k_cache.size(1), k_cache.size(2)
    v = v_heads(v_cache, n_v_heads).float()
    scores = q.float().view(batch, n_k, n_q // n_k, d_qk) @ k_cache.float().transpose(-1, -2)
    scores = (scores.view(batch, n_q, seq) * d_qk**-0.5).masked_fill(~_valid(lengths, seq), float("-inf"))
    if top_k:
        selected, index = scores.topk(min(top_k, seq), dim=-1)
        weights = selected.softmax(-1)  # (B, n_q, k)
        v = v.repeat_interleave(n_q // n_v_heads, dim=1)
        rows = v.gather(2, index.unsqueeze(-1).expand(-1, -1, -1, v.size(-1)))
        out = (weights.unsqueeze(-2) @ rows).squeeze(-2)
    else:
        weights = scores.softmax(-1).view(batch, n_v_heads, n_q // n_v_heads, seq)
        out = (weights @ v).view(batch, n_q, -1)
    return out.to(q.dtype)


def concat_v_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor | None, n_v_heads: int
) -> Tensor:
    """SDPA with ``n_k`` KV heads whose V head is the K group's ``R`` V heads side by side.

    ``lengths=None`` means every sequence fills the cache (no mask; SDPA's fastest kernels).
    Each query head then keeps the slice of its own V head from the wide output.
    """
    batch, n_q, _ = q.shape
    n_k, seq = k_cache.size(1), k_cache.size(2)
    if v_cache.size(1) != n_k:
        raise ValueError(f"concat-V needs the V cache stored as {n_k} rows of n_v/n_k heads, not {v_cache.size(1)}")
    r = n_v_heads // n_k
    d_v = v_cache.size(-1) // r
    mask = None if lengths is None else _valid(lengths, seq).unsqueeze(1)  # (B, 1, 1, T)
    if q.device.type == "cpu" and n_q != n_k:  # the CPU SDPA needs the expanded heads
        k_cache = k_cache.repeat_interleave(n_q // n_k, dim=1)
        v_cache = v_cache.repeat_interleave(n_q // n_k, dim=1)
    out = F.scaled_dot_product_attention(q.unsqueeze(2), k_cache, v_cache, attn_mask=mask, enable_gqa=n_q != k_cache.size(1))
    own = (torch.arange(n_q, device=q.device) // (n_q // n_v_heads)) % r
    out = out.view(batch, n_q, r, d_v)
    return out.gather(2, own.view(1, n_q, 1, 1).expand(batch, n_q, 1, d_v)).squeeze(2)


def reference_decode_attention(
    q: Tensor, k_cache: Tensor, v_cache: Tensor, lengths: Tensor, n_v_heads: int, top_k: int | None = None
) -> Tensor:
    """The definition in float64, one sequence and query head at a time; slow, for checks only."""
    batch, n_q, d_qk = q.shape
    n_k = k_cache.size(1)
    v = v_heads(v_cache, n_v_heads)
    out = torch.zeros(batch, n_q, v.size(-1), dtype=torch.float64, device=q.device)
    for b in range(batch):
        length = int(lengths[b])
        for h in range(n_q):
            keys = k_cache[b, h // (n_q // n_k), :length].double()
            values = v[b, h // (n_q // n_v_heads), :length].double()
            scores = keys @ q[b, h].double() / d_qk**0.5
            if top_k and top_k < length:
                scores, index = scores.topk(top_k)
                values = values[index]
            out[b, h] = scores.softmax(-1) @ values
    return out
