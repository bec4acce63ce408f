"""Parameter and FLOP counts from a config alone (no weights are built), and MFU.

Training FLOPs per token follow the PaLM/nanoGPT convention the project reports against:
``6 N + 6 L n_q (d_qk + d_v) T``, where N counts non-embedding parameters with the output head
included (the head is a real matmul even when tied) and T is the sequence length. With
``d_qk == d_v == d_head`` the attention term is the usual ``12 L n_q d_head T``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigma.config import ModelConfig

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


@dataclass(frozen=True)
class ParameterCount:
    embedding: int
    output_head: int  # 0 when tied to the embedding
    attention: int
    augmented_q: int
    feed_forward: int
    norms: int

    @property
    def total(self) -> int:
        return self.embedding + self.output_head + self.attention + self.augmented_q + self.feed_forward + self.norms

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def count_parameters(config: ModelConfig) -> ParameterCount:
    d, layers = config.d_model, config.n_layers
    q_width = config.n_q_heads * config.d_qk_head
    attention = d * q_width + d * config.n_k_heads * config.d_qk_head + d * config.n_v_heads * config.d_v_head
    attention += config.n_q_heads * config.d_v_head * d
    embedding = config.vocab_size * d
    return ParameterCount(
        embedding=embedding,
        output_head=0 if config.tie_embeddings else embedding,
        attention=layers * attention,
        augmented_q=layers * 3 * q_width * config.q_aug_dim,
        feed_forward=layers * 3 * d * config.d_ffn,
        norms=(2 * layers + 1) * d,
    )


def matmul_parameters(config: ModelConfig) -> int:
    """N in 6N: parameters every token multiplies through, output head included even when tied."""
    count = count_parameters(config)
    return count.non_embedding + (count.embedding if config.tie_embeddings else 0)


def training_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    attention = 6 * config.n_layers * config.n_q_heads * (config.d_qk_head + config.d_v_head) * seq_len
    return 6 * matmul_parameters(config) + attention


def peak_flops(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU by name (e.g. 'NVIDIA H100 80GB HBM3'), None if unknown."""
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return flops
    return None
