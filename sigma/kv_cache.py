"""The asymmetric KV cache: K stored with ``n_k`` heads, V with ``n_v`` heads, preallocated.

DiffQKV (Sigma, arXiv 2501.13629) caches ``n_k * d_qk + n_v * d_v`` values per token and layer
instead of GQA's ``2 * n_kv * d``; nothing here expands K to V's head count, which would give the
saving back. Layout, one tensor each for all layers:

- ``k``: (layers, batch, n_k, capacity, d_qk);
- ``v``: (layers, batch, n_v / R, capacity, R * d_v) with ``R = n_v / n_k`` when that divides,
  else 1: the V heads of one K group side by side in one row, the concat-V view, which both the
  Triton kernel and SDPA read without a copy.

Sequences of a batch have their own lengths (``lengths``, int32 on the device): a prompt fills
positions ``0..len-1`` and each decode step writes at position ``lengths[b]``; attention reads
only the first ``lengths[b] + 1`` positions, so right-padded prompts of different lengths need no
mask and no wasted reads.

Memory accounting is exact: ``KVCache.nbytes == kv_cache_bytes(config, batch, capacity, dtype)``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from sigma.attention import sdpa_attention
from sigma.config import ModelConfig
from sigma.flops import count_parameters
from sigma.kernels.decode import decode_attention, resolve_backend, selective_workspace


def v_row_heads(config: ModelConfig) -> int:
    """V heads stored side by side per cache row (R)."""
    return config.n_v_heads // config.n_k_heads if config.n_v_heads % config.n_k_heads == 0 else 1


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def kv_bytes_per_token_per_layer(config: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    return config.kv_cache_values_per_token * _itemsize(dtype)


def kv_bytes_per_token(config: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Cache bytes one token occupies in all layers."""
    return config.n_layers * kv_bytes_per_token_per_layer(config, dtype)


def kv_cache_bytes(config: ModelConfig, batch: int, capacity: int, dtype: torch.dtype = torch.bfloat16) -> int:
    return batch * capacity * kv_bytes_per_token(config, dtype)


def weight_bytes(config: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    return count_parameters(config).total * _itemsize(dtype)


def decode_workspace_bytes(config: ModelConfig, batch: int) -> int:
    """Per-step buffers that grow with the batch: float32 logits, and the hidden states of a step
    (a few activations of the widest layer, in float32 as an upper bound)."""
    widest = max(config.d_ffn, config.q_aug_dim, config.n_q_heads * config.d_qk_head, config.d_model)
    return batch * 4 * (2 * config.vocab_size + 8 * widest)


def max_batch_size(
    config: ModelConfig, context: int, memory_bytes: int, dtype: torch.dtype = torch.bfloat16,
    reserve_bytes: int = 0,
) -> int:
    """The largest batch whose weights, KV cache of ``context`` positions per sequence and decode
    buffers fit in ``memory_bytes`` (less ``reserve_bytes`` for the runtime's own use)."""
    free = memory_bytes - reserve_bytes - weight_bytes(config, dtype)
    per_sequence = context * kv_bytes_per_token(config, dtype) + decode_workspace_bytes(config, 1)
    return max(0, free // per_sequence)


class KVCache:
    """Preallocated K and V for every layer of one batch, plus each sequence's length."""

    def __init__(self, config: ModelConfig, batch: int, capacity: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if capacity > config.max_seq_len:
            raise ValueError(f"cache capacity {capacity} exceeds the model's max_seq_len {config.max_seq_len}")
        self.config, self.batch, self.capacity, self.dtype = config, batch, capacity, dtype
        self.r = v_row_heads(config)
        # Zeros, not empty: unwritten rows are multiplied by zero weights, which must not meet NaNs.
        self.k = torch.zeros(config.n_layers, batch, config.n_k_heads, capacity, config.d_qk_head, device=device, dtype=dtype)
        self.v = torch.zeros(config.n_layers, batch, config.n_v_heads // self.r, capacity, self.r * config.d_v_head,
                             device=device, dtype=dtype)
        self.lengths = torch.zeros(batch, dtype=torch.int32, device=device)
        self._rows = torch.arange(batch, device=device)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    def v_rows(self, v: Tensor) -> Tensor:
        """(B, n_v, T, d_v) -> the stored layout (B, n_v / R, T, R * d_v)."""
        batch, n_v, seq, d_v = v.shape
        if self.r == 1:
            return v
        return v.view(batch, n_v // self.r, self.r, seq, d_v).transpose(2, 3).reshape(batch, n_v // self.r, seq, self.r * d_v)

    def write_prompt(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Store a (right-padded) prompt's k and v at positions 0..T-1."""
        seq = k.size(2)
        self.k[layer, :, :, :seq] = k
        self.v[layer, :, :, :seq] = self.v_rows(v)

    def write_step(self, k_layer: Tensor, v_layer: Tensor, k: Tensor, v: Tensor, positions: Tensor) -> None:
        """Store one new token per sequence at its own position (``lengths`` as int64) of one layer's cache."""
        k_layer[self._rows, :, positions] = k[:, :, 0]
        v_layer[self._rows, :, positions] = self.v_rows(v)[:, :, 0]

    def attention(self, backend: str = "auto", top_k: int | None = None) -> "CachedAttention":
        return CachedAttention(self, resolve_backend(backend, self.k.device), top_k)


class CachedAttention:
    """Per-layer attention callables for ``Transformer.hidden_states(..., caches=...)``.

    ``prefill`` mode stores the prompt and attends causally within it (the cache must be empty);
    ``decode`` mode stores one token per sequence and attends over each sequence's cache. The
    step's attention lengths (``lengths + 1``) are set once per step by ``begin_step``.
    """

    def __init__(self, cache: KVCache, backend: str, top_k: int | None):
        self.cache, self.backend, self.top_k = cache, backend, top_k
        self.prefill = True
        self.step_lengths: Tensor | None = None
        self.positions: Tensor | None = None
        self.max_length: int | None = None  # a host-side bound for the torch paths; None under CUDA graphs
        # selective V's buffers, shared by the layers of every step (allocated before any capture)
        self.workspace = None
        if top_k and backend == "triton":
            self.workspace = selective_workspace(cache.batch, cache.config.n_q_heads, cache.capacity, top_k, cache.k.device)

    def begin_step(self, max_length: int | None) -> None:
        self.prefill = False
        self.positions = self.cache.lengths.long()  # where each sequence's new token goes, in every layer
        self.step_lengths = self.cache.lengths + 1
        self.max_length = max_length

    def layers(self, compiled: bool = False) -> list:
        """One callable per layer; ``compiled``: for blocks run by torch.compile, which then calls
        them eagerly, outside its graphs, so that the cache is written in place, never copied."""
        kind = _eager_under_compile() if compiled else _LayerAttention
        return [kind(self, i) for i in range(self.cache.config.n_layers)]


class _LayerAttention:
    """One layer's view of the cache. It holds that layer's K and V tensors rather than its
    index, so that one compiled block serves every layer."""

    def __init__(self, owner: CachedAttention, index: int):
        self.owner, self.index = owner, index
        self.k, self.v = owner.cache.k[index], owner.cache.v[index]

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        owner, cache = self.owner, self.owner.cache
        if owner.prefill:
            cache.write_prompt(self.index, k, v)
            return sdpa_attention(q, k, v, mask)
        cache.write_step(self.k, self.v, k, v, owner.positions)
        out = decode_attention(
            q[:, :, 0], self.k, self.v, owner.step_lengths, cache.config.n_v_heads, top_k=owner.top_k,
            backend=owner.backend, max_length=owner.max_length, workspace=owner.workspace,
        )
        return out.unsqueeze(2)


@functools.cache
def _eager_under_compile() -> type:
    """``_LayerAttention`` that torch.compile leaves to run eagerly (built on first use: marking it
    imports torch._dynamo, which an engine that never compiles need not load)."""

    class EagerLayerAttention(_LayerAttention):
        __call__ = torch.compiler.disable(_LayerAttention.__call__)

    return EagerLayerAttention
