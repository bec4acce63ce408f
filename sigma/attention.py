"""DiffQKV attention (Sigma, arXiv 2501.13629, section 2).

K and V keep their own head counts and head dims: with ``n_q`` query heads, query head ``h``
reads K head ``h // (n_q / n_k)`` and V head ``h // (n_q / n_v)``. The paper compresses K harder
than V (Sigma-1.5B: 32 Q, 4 K, 16 V heads), which shrinks the KV cache to ``n_k*d_k + n_v*d_v``
values per token and layer. "Augmented Q" puts a gated MLP on the query path,
``q_down(silu(q_gate(q)) * q_up(q))``; the dot product keeps head dim ``d_qk_head``.

Kernels: on CUDA, ``scaled_dot_product_attention(..., enable_gqa=True)`` accepts unequal K and V
head counts only on the cuDNN backend (flash refuses them), so unequal heads are pinned to cuDNN
and equal heads get whatever SDPA picks. FlexAttention is never used here: it returned wrong
results, silently, for 1 K head and 4 V heads. ``check_attention_kernel`` compares a kernel with
a float64 reference and is run once before training on CUDA.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigma.config import ModelConfig

AttentionKernel = Callable[[Tensor, Tensor, Tensor, "Tensor | None"], Tensor]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding, rotate-half layout; x (B, H, T, D), cos/sin (T, D) or (B, 1, T, D)."""
    x_float = x.float()
    first, second = x_float.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x_float * cos + rotated * sin).type_as(x)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Causal attention; q (B, n_q, T, d_qk), k (B, n_k, T, d_qk), v (B, n_v, T, d_v).

    ``mask`` (bool, broadcastable to (B, 1, T, T), True = may attend) replaces the causal mask,
    e.g. to keep attention inside documents.
    """
    causal = mask is None
    n_q, n_k, n_v = q.size(1), k.size(1), v.size(1)
    if q.is_cuda and n_k == n_v and k.size(-1) == v.size(-1):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=n_k != n_q)
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=True)
    # CPU, other devices, and float32 on CUDA (cuDNN attention takes half precision only): expand
    # K and V to the query heads, then any SDPA kernel is correct.
    k = k.repeat_interleave(n_q // n_k, dim=1)
    v = v.repeat_interleave(n_q // n_v, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """The definition, in float64, one query head at a time; slow, for checks only."""
    n_q, n_k, n_v, seq = q.size(1), k.size(1), v.size(1), q.size(2)
    allowed = torch.ones(seq, seq, dtype=torch.bool, device=q.device).tril() if mask is None else mask
    heads = []
    for h in range(n_q):
        qh = q[:, h].double()
        kh = k[:, h // (n_q // n_k)].double()
        vh = v[:, h // (n_q // n_v)].double()
        scores = qh @ kh.transpose(-1, -2) / qh.size(-1) ** 0.5
        if allowed.dim() == 4:
            scores = scores.masked_fill(~allowed[:, 0], float("-inf"))
        else:
            scores = scores.masked_fill(~allowed, float("-inf"))
        heads.append(scores.softmax(-1) @ vh)
    return torch.stack(heads, dim=1)


def check_attention_kernel(
    config: ModelConfig,
    device: torch.device | str,
    dtype: torch.dtype = torch.bfloat16,
    kernel: AttentionKernel = sdpa_attention,
    seq_len: int = 128,
) -> float:
    """Raise if ``kernel`` disagrees with the float64 reference on this config's head layout.

    Checks the output and the gradients of q, k and v, since a wrong head map in the backward
    pass would corrupt training just as silently, causal and with a document mask. Errors are
    relative to the largest reference value; the tolerance allows bf16 rounding and is far below
    the error of a wrong head map.
    Returns the largest error.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    batch = 2

    def sample(heads: int, dim: int, scale: float = 1.0) -> Tensor:
        x = torch.randn(batch, heads, seq_len, dim, generator=gen) * scale
        return x.to(device=device, dtype=dtype).requires_grad_()

    # Queries scaled up so each head attends sharply: a wrong head map then shows clearly.
    q = sample(config.n_q_heads, config.d_qk_head, scale=2.0)
    k = sample(config.n_k_heads, config.d_qk_head)
    v = sample(config.n_v_heads, config.d_v_head)
    q64, k64, v64 = (t.detach().double() for t in (q, k, v))
    # Document masking as training builds it (``Transformer.forward``): packed documents of
    # unequal lengths in the first sequence, one whole document in the second. The dense mask
    # takes another kernel path than ``is_causal`` (cuDNN with a mask, for unequal heads).
    cut = torch.tensor([seq_len // 5, seq_len // 2])
    doc_ids = torch.stack([torch.bucketize(torch.arange(seq_len), cut, right=True), torch.zeros(seq_len, dtype=torch.long)])
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    doc_mask = ((doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)).unsqueeze(1) & causal).to(device)

    tolerance = 3e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-4
    errors = {}
    for case, mask in (("causal", None), ("document mask", doc_mask)):
        for t in (q, k, v):
            t.grad = None
        out = kernel(q, k, v, mask)
        grad_out = torch.randn(out.shape, generator=gen).to(device)
        (out.float() * grad_out).sum().backward()
        ref = [t.clone().requires_grad_() for t in (q64, k64, v64)]
        expected = reference_attention(*ref, mask)
        (expected * grad_out.double()).sum().backward()
        for name, got, want in (("output", out, expected), ("dq", q.grad, ref[0].grad), ("dk", k.grad, ref[1].grad),
                                ("dv", v.grad, ref[2].grad)):
            error = float("inf") if got is None else ((got.double() - want).abs().max() / want.abs().max()).item()
            errors[f"{name} ({case})"] = error
    worst = max(errors, key=errors.get)
    if not errors[worst] <= tolerance:
        raise RuntimeError(
            f"attention kernel disagrees with the float64 reference for Q/K/V heads "
            f"{config.n_q_heads}/{config.n_k_heads}/{config.n_v_heads} on {device} ({dtype}): "
            f"relative {worst} error {errors[worst]:.3g} > {tolerance:g}; refusing to train with it"
        )
    return errors[worst]


class DiffQKVAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_q_heads, self.n_k_heads, self.n_v_heads = config.n_q_heads, config.n_k_heads, config.n_v_heads
        self.d_qk_head, self.d_v_head = config.d_qk_head, config.d_v_head
        q_width = config.n_q_heads * config.d_qk_head
        self.q_proj = nn.Linear(config.d_model, q_width, bias=False)
        if config.q_aug_dim:
            self.q_gate = nn.Linear(q_width, config.q_aug_dim, bias=False)
            self.q_up = nn.Linear(q_width, config.q_aug_dim, bias=False)
            self.q_down = nn.Linear(config.q_aug_dim, q_width, bias=False)
        self.augmented_q = bool(config.q_aug_dim)
        self.k_proj = nn.Linear(config.d_model, config.n_k_heads * config.d_qk_head, bias=False)
        self.v_proj = nn.Linear(config.d_model, config.n_v_heads * config.d_v_head, bias=False)
        self.o_proj = nn.Linear(config.n_q_heads * config.d_v_head, config.d_model, bias=False)

    def project(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q (B, n_q, T, d_qk) and k (B, n_k, T, d_qk) with RoPE applied, v (B, n_v, T, d_v)."""
        batch, seq, _ = x.shape
        q = self.q_proj(x)
        if self.augmented_q:
            q = self.q_down(F.silu(self.q_gate(q)) * self.q_up(q))
        q = q.view(batch, seq, self.n_q_heads, self.d_qk_head).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_k_heads, self.d_qk_head).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_v_heads, self.d_v_head).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None, cache: AttentionKernel | None = None
    ) -> Tensor:
        """``cache``, when given, stores k and v and attends over everything stored (inference)."""
        batch, seq, _ = x.shape
        q, k, v = self.project(x, cos, sin)
        out = sdpa_attention(q, k, v, mask) if cache is None else cache(q, k, v, mask)  # (B, n_q, T, d_v)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.n_q_heads * self.d_v_head))
