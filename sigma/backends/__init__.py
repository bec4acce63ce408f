"""Inference backends behind one small interface (``sigma.backends.base.Backend``): this project's
own engine on its checkpoints, Hugging Face ``transformers`` for any causal LM, and vLLM, in
process or through an OpenAI-compatible server. The rewrite stage, ``sigma eval`` and the loop
load them with ``load_backend(EngineSpec(...))``."""

from sigma.backends.base import Backend, EngineSpec, Generation, Prompt, Sampling, load_backend

__all__ = ["Backend", "EngineSpec", "Generation", "Prompt", "Sampling", "load_backend"]
