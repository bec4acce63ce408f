"""vLLM's entry point for Sigma (``vllm.general_plugins`` in pyproject): vLLM calls ``register``
in each of its processes, so ``vllm serve FOLDER`` and ``vllm.LLM(FOLDER)`` load a folder written
by ``sigma export``, without ``--trust-remote-code``.

Nothing else in Sigma imports this module or the two it names (``sigma.vllm_config``,
``sigma.vllm_model``), so Sigma imports without vLLM; vLLM imports the model only when it loads a
Sigma folder.
"""

from __future__ import annotations

ARCHITECTURE = "SigmaForCausalLM"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from sigma.vllm_config import SigmaServingConfig

    AutoConfig.register(SigmaServingConfig.model_type, SigmaServingConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "sigma.vllm_model:SigmaForCausalLM")
