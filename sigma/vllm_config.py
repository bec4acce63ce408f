"""The config vLLM reads from an exported Sigma folder (registered by ``sigma.vllm_plugin``)."""

from __future__ import annotations

from sigma.hf_modeling import SigmaConfig


class SigmaServingConfig(SigmaConfig):
    """The exported config plus the two names vLLM sizes its KV cache by: ``num_key_value_heads``
    is V's head count, since ``sigma.vllm_model`` expands K to it, and ``head_dim`` is the
    query/key head dim."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_key_value_heads = self.num_value_heads
        self.head_dim = self.qk_head_dim
