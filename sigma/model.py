"""The Sigma decoder: pre-norm blocks of RMSNorm, DiffQKV attention with RoPE, and a SwiGLU MLP.

Written to be ``torch.compile``d: static shapes, no data-dependent Python control flow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sigma.attention import DiffQKVAttention
from sigma.config import ModelConfig
from sigma.losses import chunked_cross_entropy


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x_float = x.float()
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_tables(config: ModelConfig, seq_len: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin, (seq_len, d_qk_head) in float32, for the rotate-half RoPE layout."""
    half = config.d_qk_head // 2
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, device=device, dtype=torch.float64) / half))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().float(), angles.sin().float()


class FeedForward(nn.Module):
    """SwiGLU: ``w_down(silu(w_gate(x)) * w_up(x))``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w_gate = nn.Linear(config.d_model, config.d_ffn, bias=False)
        self.w_up = nn.Linear(config.d_model, config.d_ffn, bias=False)
        self.w_down = nn.Linear(config.d_ffn, config.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attention = DiffQKVAttention(config)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, cache=None) -> Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, cache)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.output = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config, config.max_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Training memory options, not shape (set by the trainer): tokens per chunk of the loss
        # (0: the full logits at once) and recomputing each block's activations in the backward pass.
        self.loss_chunk = 0
        self.activation_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std); projections into the residual stream scaled by 1/sqrt(2 L) (GPT-2)."""
        std = self.config.init_std
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith(("o_proj.weight", "w_down.weight")):
                param.normal_(0.0, std / math.sqrt(2 * self.config.n_layers))
            else:
                param.normal_(0.0, std)
        cos, sin = rope_tables(self.config, self.config.max_seq_len, device=self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    def hidden_states(
        self, tokens: Tensor, positions: Tensor | None = None, mask: Tensor | None = None, caches=None
    ) -> Tensor:
        """The final normed hidden states (B, T, d_model), before the output head.

        ``caches`` (inference) is one attention callable per layer, ``(q, k, v, mask) -> out``, that
        stores k and v and attends over the layer's cache (``sigma.kv_cache``).
        """
        if positions is None:
            seq = tokens.size(1)
            cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        else:
            cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        x = self.tok_embeddings(tokens)
        for index, layer in enumerate(self.layers):
            if self.activation_checkpointing and self.training and caches is None:
                x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, None if caches is None else caches[index])
        return self.norm(x)

    def forward(
        self,
        tokens: Tensor,
        targets: Tensor | None = None,
        doc_ids: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, V), or with ``targets`` the mean cross-entropy (targets < 0 are ignored).

        ``doc_ids`` (B, T) keeps attention inside each document of a packed sequence;
        ``positions`` (B, T) gives RoPE positions (default 0..T-1).
        """
        seq = tokens.size(1)
        mask = None
        if doc_ids is not None:
            causal = torch.ones(seq, seq, dtype=torch.bool, device=tokens.device).tril()
            mask = (doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)).unsqueeze(1) & causal
        hidden = self.hidden_states(tokens, positions, mask)
        return self.output(hidden) if targets is None else self.loss(hidden, targets)

    def loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of the output head on ``hidden`` (B, T, d) against ``targets`` (< 0
        ignored); its own method so that it can be compiled apart from the blocks."""
        if self.loss_chunk:
            return chunked_cross_entropy(hidden.flatten(0, 1), self.output.weight, targets.flatten(), self.loss_chunk)
        return F.cross_entropy(self.output(hidden).flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
