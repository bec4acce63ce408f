"""Sigma (DiffQKV) as a vLLM model, for folders written by ``sigma export``; registered with vLLM
by ``sigma.vllm_plugin``, and imported by vLLM only.

It computes what ``sigma.model.Transformer`` computes, with vLLM's layers: paged attention, its
RoPE, RMSNorm and embedding, and ``torch.compile`` unless vLLM runs eagerly. Module names are the
exported weights' names, so the checkpoint loads as it is.

K heads are expanded for vLLM's KV cache. vLLM's paged cache stores K and V with one head count
(0.32's ``AttentionSpec`` has one ``num_kv_heads``); DiffQKV has fewer K heads than V heads. So
the cache is given V's head count and each K head is repeated ``n_v / n_k`` times in place
(``repeat_interleave``) after RoPE and before attention. That is exact: query head ``h`` reads
V head ``j = h // (n_q / n_v)``, and the K head it needs, ``h // (n_q / n_k)``, equals
``j // (n_v / n_k)``, the K head repeated into slot ``j``. The outputs are Sigma's; the cost is
cache bytes: ``2 * n_v * d`` values per token and layer where Sigma's own engine stores
``(n_k + n_v) * d``.

Limits, refused with an error: tensor or pipeline parallelism (augmented Q mixes all query heads,
so query heads cannot be split across ranks as written), and a V head dim other than the Q/K one
(vLLM's CPU attention takes one head size).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import ReplicatedLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.rotary_embedding import get_rope
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.models.utils import AutoWeightsLoader, maybe_prefix
from vllm.sequence import IntermediateTensors


def _linear(in_features: int, out_features: int, vllm_config: VllmConfig, prefix: str) -> ReplicatedLinear:
    return ReplicatedLinear(in_features, out_features, bias=False, quant_config=vllm_config.quant_config, prefix=prefix)


class SigmaAttention(nn.Module):
    def __init__(self, vllm_config: VllmConfig, prefix: str):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.n_q, self.n_k, self.n_v = config.num_attention_heads, config.num_key_heads, config.num_value_heads
        self.head_dim = config.qk_head_dim
        self.k_repeat = self.n_v // self.n_k
        q_width, d_model = self.n_q * self.head_dim, config.hidden_size
        self.q_proj = _linear(d_model, q_width, vllm_config, f"{prefix}.q_proj")
        self.augmented_q = bool(config.q_aug_dim)
        if self.augmented_q:
            self.q_gate = _linear(q_width, config.q_aug_dim, vllm_config, f"{prefix}.q_gate")
            self.q_up = _linear(q_width, config.q_aug_dim, vllm_config, f"{prefix}.q_up")
            self.q_down = _linear(config.q_aug_dim, q_width, vllm_config, f"{prefix}.q_down")
        self.k_proj = _linear(d_model, self.n_k * self.head_dim, vllm_config, f"{prefix}.k_proj")
        self.v_proj = _linear(d_model, self.n_v * self.head_dim, vllm_config, f"{prefix}.v_proj")
        self.o_proj = _linear(q_width, d_model, vllm_config, f"{prefix}.o_proj")
        self.rotary_emb = get_rope(
            self.head_dim, max_position=config.max_position_embeddings, is_neox_style=True,  # rotate-half
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        )
        self.attn = Attention(
            self.n_q, self.head_dim, self.head_dim**-0.5, num_kv_heads=self.n_v,
            cache_config=vllm_config.cache_config, quant_config=vllm_config.quant_config, prefix=f"{prefix}.attn",
        )

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, _ = self.q_proj(x)
        if self.augmented_q:
            gate, _ = self.q_gate(q)
            up, _ = self.q_up(q)
            q, _ = self.q_down(F.silu(gate) * up)
        k, _ = self.k_proj(x)
        v, _ = self.v_proj(x)
        q, k = self.rotary_emb(positions, q, k)
        if self.k_repeat > 1:  # see the module docstring
            k = k.view(-1, self.n_k, self.head_dim).repeat_interleave(self.k_repeat, dim=1).flatten(1)
        out, _ = self.o_proj(self.attn(q, k, v))
        return out


class SigmaFeedForward(nn.Module):
    def __init__(self, vllm_config: VllmConfig, prefix: str):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.w_gate = _linear(config.hidden_size, config.intermediate_size, vllm_config, f"{prefix}.w_gate")
        self.w_up = _linear(config.hidden_size, config.intermediate_size, vllm_config, f"{prefix}.w_up")
        self.w_down = _linear(config.intermediate_size, config.hidden_size, vllm_config, f"{prefix}.w_down")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, _ = self.w_gate(x)
        up, _ = self.w_up(x)
        out, _ = self.w_down(F.silu(gate) * up)
        return out


class SigmaDecoderLayer(nn.Module):
    def __init__(self, vllm_config: VllmConfig, prefix: str):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.attention_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attention = SigmaAttention(vllm_config, f"{prefix}.attention")
        self.ffn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.feed_forward = SigmaFeedForward(vllm_config, f"{prefix}.feed_forward")

    def forward(self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None):
        """vLLM's fused form of ``x += attention(norm(x)); x += ffn(norm(x))``: the residual
        stream is carried beside and added inside the next norm."""
        if residual is None:
            residual = x
            x = self.attention_norm(x)
        else:
            x, residual = self.attention_norm(x, residual)
        x = self.attention(positions, x)
        x, residual = self.ffn_norm(x, residual)
        return self.feed_forward(x), residual


@support_torch_compile(dynamic_arg_dims={"input_ids": 0, "positions": 0, "inputs_embeds": 0})
class SigmaModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            SigmaDecoderLayer(vllm_config, f"{prefix}.layers.{i}") for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = inputs_embeds if inputs_embeds is not None else self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers:
            x, residual = layer(positions, x, residual)
        x, _ = self.norm(x, residual)
        return x


class SigmaForCausalLM(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        parallel = vllm_config.parallel_config
        if parallel.tensor_parallel_size > 1 or parallel.pipeline_parallel_size > 1:
            raise ValueError("Sigma's vLLM model runs on one device: tensor_parallel_size and "
                             "pipeline_parallel_size must be 1")
        if config.qk_head_dim != config.v_head_dim:
            raise ValueError(f"Sigma's vLLM model needs one head dim for Q, K and V; this model has "
                             f"{config.qk_head_dim} (Q, K) and {config.v_head_dim} (V)")
        if config.num_value_heads % config.num_key_heads:
            raise ValueError(f"{config.num_value_heads} V heads are not a multiple of {config.num_key_heads} K heads: "
                             "K cannot be expanded to V's head count")
        self.config = config
        self.model = SigmaModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, prefix=maybe_prefix(prefix, "lm_head"))
        if config.tie_word_embeddings:
            self.lm_head = self.lm_head.tie_weights(self.model.embed_tokens)
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights)  # tied: lm_head shares the embedding's parameter
