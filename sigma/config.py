"""Model shapes: one dataclass and the named presets.

Sigma (arXiv 2501.13629) differs from a Llama-style decoder only in its attention: K and V have
their own head counts (and head dims), and the query path may carry an "augmented Q" MLP. MHA and
GQA baselines are the same config with ``n_k_heads == n_v_heads`` and no augmented Q.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, TypeAdapter


@dataclass(frozen=True)
class ModelConfig:
    __pydantic_config__ = ConfigDict(extra="forbid")

    vocab_size: int = 32768
    n_layers: int = 12
    d_model: int = 768
    n_q_heads: int = 12
    n_k_heads: int = 2
    n_v_heads: int = 6
    d_qk_head: int = 64  # head dim of queries and keys: the dot product's width
    d_v_head: int = 64
    q_aug_dim: int = 0  # intermediate width of the augmented-Q MLP; 0 turns it off
    d_ffn: int = 2048
    rope_theta: float = 50_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    max_seq_len: int = 2048
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for heads in ("n_k_heads", "n_v_heads"):
            if self.n_q_heads % getattr(self, heads):
                raise ValueError(f"n_q_heads={self.n_q_heads} is not a multiple of {heads}={getattr(self, heads)}")
        if self.d_qk_head % 2:
            raise ValueError("d_qk_head must be even for RoPE")

    @property
    def attention_kind(self) -> str:
        if self.n_k_heads != self.n_v_heads or self.d_qk_head != self.d_v_head:
            return "diffqkv"
        return "mha" if self.n_k_heads == self.n_q_heads else "gqa"

    @property
    def kv_cache_values_per_token(self) -> int:
        """Values one layer caches per token: ``n_k * d_k + n_v * d_v``."""
        return self.n_k_heads * self.d_qk_head + self.n_v_heads * self.d_v_head

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        return _VALIDATOR.validate_python(values)


_VALIDATOR = TypeAdapter(ModelConfig)


def _with_baselines(name: str, config: ModelConfig, gqa_kv_heads: int) -> dict[str, ModelConfig]:
    """A DiffQKV preset plus its GQA and MHA baselines, which differ only in heads and augmented Q.

    The GQA baseline keeps V's head count for K too (the paper compares K4/V16 with GQA 16/16).
    """
    plain = dict(q_aug_dim=0, d_qk_head=config.d_v_head)
    return {
        name: config,
        f"{name}-gqa": config.replace(n_k_heads=gqa_kv_heads, n_v_heads=gqa_kv_heads, **plain),
        f"{name}-mha": config.replace(n_k_heads=config.n_q_heads, n_v_heads=config.n_q_heads, **plain),
    }


PRESETS: dict[str, ModelConfig] = {
    # For tests on a CPU: every DiffQKV feature on, seconds per hundred steps.
    **_with_baselines(
        "sigma-tiny",
        ModelConfig(
            vocab_size=512, n_layers=2, d_model=64, n_q_heads=4, n_k_heads=1, n_v_heads=2,
            d_qk_head=16, d_v_head=16, q_aug_dim=96, d_ffn=176, max_seq_len=256,
        ),
        gqa_kv_heads=2,
    ),
    # GPT-2-small scale with the paper's K:V:Q ratios as near as 12 query heads allow.
    **_with_baselines(
        "sigma-125m",
        ModelConfig(
            vocab_size=32768, n_layers=12, d_model=768, n_q_heads=12, n_k_heads=2, n_v_heads=6,
            d_ffn=2048,
        ),
        gqa_kv_heads=6,
    ),
    # The paper's 1B ablation shape (22 layers, hidden 2048, 32 query heads), K4/V16.
    **_with_baselines(
        "sigma-1b",
        ModelConfig(
            vocab_size=32768, n_layers=22, d_model=2048, n_q_heads=32, n_k_heads=4, n_v_heads=16,
            d_ffn=5632,
        ),
        gqa_kv_heads=16,
    ),
    # Sigma-1.5B as published: 32 Q / 4 K / 16 V heads of dim 64, augmented Q of width 3072.
    **_with_baselines(
        "sigma-1.5b",
        ModelConfig(
            vocab_size=128_256, n_layers=26, d_model=2048, n_q_heads=32, n_k_heads=4, n_v_heads=16,
            q_aug_dim=3072, d_ffn=6144, tie_embeddings=True, max_seq_len=4096,
        ),
        gqa_kv_heads=16,
    ),
}


def resolve_model_config(spec: str | dict[str, Any] | ModelConfig) -> ModelConfig:
    """A preset name, a mapping ``{preset: NAME, <field>: <override>, ...}``, or a full config."""
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise KeyError(f"unknown model preset {spec!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[spec]
    values = dict(spec)
    base = values.pop("preset", None)
    if base is None:
        return ModelConfig.from_dict(values)
    return ModelConfig.from_dict({**resolve_model_config(base).to_dict(), **values})
