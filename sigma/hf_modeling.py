"""Sigma (DiffQKV attention, arXiv 2501.13629) for Hugging Face ``transformers``.

``sigma export`` copies this file into an exported folder as ``modeling_sigma.py``; load it with
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``. It depends on torch and
transformers only, and computes what ``sigma.model.Transformer`` computes.

DiffQKV: K and V have their own head counts; query head ``h`` reads K head ``h // (n_q / n_k)``
and V head ``h // (n_q / n_v)``. The KV cache stores K with ``n_k`` heads and V with ``n_v``
heads, so it holds ``n_k * d_qk + n_v * d_v`` values per token and layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast


class SigmaConfig(PretrainedConfig):
    model_type = "sigma_diffqkv"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 32768,
        hidden_size: int = 768,
        intermediate_size: int = 2048,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        num_key_heads: int = 2,
        num_value_heads: int = 6,
        qk_head_dim: int = 64,
        v_head_dim: int = 64,
        q_aug_dim: int = 0,
        rope_theta: float = 50_000.0,
        rms_norm_eps: float = 1e-5,
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        use_cache: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_heads = num_key_heads
        self.num_value_heads = num_value_heads
        self.qk_head_dim = qk_head_dim
        self.v_head_dim = v_head_dim
        self.q_aug_dim = q_aug_dim
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


class SigmaRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_float = x.float()
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rope_cos_sin(config: SigmaConfig, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, 1, T, d_qk) in float32 for positions (B, T); rotate-half layout."""
    half = config.qk_head_dim // 2
    device = position_ids.device
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, device=device, dtype=torch.float64) / half))
    angles = position_ids.double().unsqueeze(-1) * inv_freq
    angles = torch.cat((angles, angles), dim=-1).unsqueeze(1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x_float = x.float()
    first, second = x_float.chunk(2, dim=-1)
    return (x_float * cos + torch.cat((-second, first), dim=-1) * sin).type_as(x)


class SigmaAttention(nn.Module):
    def __init__(self, config: SigmaConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_q, self.n_k, self.n_v = config.num_attention_heads, config.num_key_heads, config.num_value_heads
        self.d_qk, self.d_v = config.qk_head_dim, config.v_head_dim
        q_width = self.n_q * self.d_qk
        self.q_proj = nn.Linear(config.hidden_size, q_width, bias=False)
        self.augmented_q = bool(config.q_aug_dim)
        if self.augmented_q:
            self.q_gate = nn.Linear(q_width, config.q_aug_dim, bias=False)
            self.q_up = nn.Linear(q_width, config.q_aug_dim, bias=False)
            self.q_down = nn.Linear(config.q_aug_dim, q_width, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.n_k * self.d_qk, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.n_v * self.d_v, bias=False)
        self.o_proj = nn.Linear(self.n_q * self.d_v, config.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, past_key_values=None):
        batch, seq, _ = x.shape
        q = self.q_proj(x)
        if self.augmented_q:
            q = self.q_down(F.silu(self.q_gate(q)) * self.q_up(q))
        q = q.view(batch, seq, self.n_q, self.d_qk).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.n_k, self.d_qk).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.n_v, self.d_v).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        # Expanding K and V to the query heads is the portable, correct path.
        k = k.repeat_interleave(self.n_q // self.n_k, dim=1)
        v = v.repeat_interleave(self.n_q // self.n_v, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.n_q * self.d_v))


class SigmaMLP(nn.Module):
    def __init__(self, config: SigmaConfig):
        super().__init__()
        self.w_gate = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w_up = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w_down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class SigmaDecoderLayer(nn.Module):
    def __init__(self, config: SigmaConfig, layer_idx: int):
        super().__init__()
        self.attention_norm = SigmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attention = SigmaAttention(config, layer_idx)
        self.ffn_norm = SigmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.feed_forward = SigmaMLP(config)

    def forward(self, x, cos, sin, mask, past_key_values=None):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask, past_key_values)
        return x + self.feed_forward(self.ffn_norm(x))


class SigmaPreTrainedModel(PreTrainedModel):
    config_class = SigmaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["SigmaDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, SigmaRMSNorm):
            nn.init.ones_(module.weight)


class SigmaModel(SigmaPreTrainedModel):
    def __init__(self, config: SigmaConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(SigmaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = SigmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, seq = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None and attention_mask is not None:  # left padding: count real tokens
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past : past + seq]
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=device).unsqueeze(0).expand(batch, -1)
        cos, sin = rope_cos_sin(self.config, position_ids)

        # (B, 1, T, past + T), True = may attend: causal, minus padded keys. A query always sees
        # itself so that padded rows stay finite.
        query_pos = torch.arange(past, past + seq, device=device).unsqueeze(1)
        key_pos = torch.arange(past + seq, device=device).unsqueeze(0)
        mask = (key_pos <= query_pos).unsqueeze(0).unsqueeze(0)
        if attention_mask is not None:
            keys_ok = attention_mask[:, None, None, : past + seq].bool()
            mask = (mask & keys_ok) | (key_pos == query_pos)
        mask = mask.expand(batch, 1, seq, past + seq)

        x = inputs_embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask, past_key_values if use_cache else None)
        return self.norm(x), past_key_values if use_cache else None


class SigmaForCausalLM(SigmaPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: SigmaConfig):
        super().__init__(config)
        self.model = SigmaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep=0, **kwargs):
        hidden, past_key_values = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
        )
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past_key_values)
