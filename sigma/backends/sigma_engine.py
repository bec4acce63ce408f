"""This project's own engine (``sigma.generate.Engine``) on a checkpoint written by ``sigma train``.

A Sigma checkpoint trained here is a base model: it continues text, so it gets each prompt's plain
form. A checkpoint converted from an instruction-tuned model (``sigma convert``) carries its chat
template: it gets the chat messages rendered with it, as ``transformers`` would render them, and
ends at the end-of-turn token. A prompt longer than the context leaves room for the completion by
dropping its oldest tokens (the instruction and the answer cue sit at its end).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from sigma.backends.base import Backend, EngineSpec, Generation, Prompt, Sampling, Score, cut_at_stop
from sigma.backends.likelihood import continuation_nll
from sigma.checkpoint import read_checkpoint
from sigma.generate import Engine
from sigma.sampling import SamplingParams


class SigmaBackend(Backend):
    name = "sigma"

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        dtype = getattr(torch, spec.dtype) if spec.dtype else None
        self.engine = Engine.load(spec.model, device=spec.device, dtype=dtype, max_batch_size=spec.max_batch_size)
        self.model_id = spec.model
        settings = self.engine.chat_settings
        has_template = settings is not None and bool(settings.template)
        self.chat = has_template if spec.chat is None else spec.chat
        if self.chat and not has_template:
            raise ValueError(f"{spec.model} has no chat template (tokenizer_config.json): set chat: false")
        self.max_context = self.engine.config.max_seq_len
        # scored in windows of the length it trained on: positions past it were never trained
        trained = read_checkpoint(spec.model).state.get("train_config", {}).get("seq_len")
        self.score_window = min(trained or self.max_context, self.max_context)

    def _encode(self, text: str) -> list[int]:
        """A rendered chat is encoded as it is; plain text starts after the end-of-text token."""
        if self.chat:
            return self.engine.tokenizer.encode(text, add_special_tokens=False).ids
        return self.engine.encode(text)

    def render(self, prompt: Prompt) -> str:
        return self.engine.chat_settings.render(prompt.messages) + prompt.prefill if self.chat else prompt.plain

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def _fit(self, ids: list[int], max_new_tokens: int) -> list[int]:
        room = self.max_context - min(max_new_tokens, self.max_context // 2)
        return ids if len(ids) <= room else [ids[0], *ids[len(ids) - room + 1 :]]

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        engine = self.engine
        ids = [self._fit(self._encode(self.render(p)), sampling.max_new_tokens) for p in prompts]
        results = engine.generate_ids(
            ids, sampling.max_new_tokens, sampling=SamplingParams(sampling.temperature, sampling.top_k, sampling.top_p),
            stop=sampling.stop, seed=sampling.seed,
        )
        out = []
        for prompt_ids, (generated, reason) in zip(ids, results):
            text = engine.tokenizer.decode(generated[:-1] if reason == "eos" else generated)
            if reason == "stop":
                text = cut_at_stop(text, sampling.stop)[0]
            out.append(Generation(text, reason, len(prompt_ids), len(generated)))
        return out

    @torch.no_grad()
    def score(self, texts: Sequence[str], window: int | None = None) -> list[Score]:
        """Each text as a document of the packed stream: after an end-of-text token, ended by one;
        read in windows of the context (every token predicted once)."""
        engine = self.engine
        window = min(window or self.max_context, self.max_context)
        scores = []
        for text in texts:
            ids = torch.tensor(engine.encode(text) + [engine.eos_id], device=engine.device)
            nll, count = 0.0, 0
            for start in range(0, len(ids) - 1, window):
                chunk = ids[start : start + window + 1]
                logits = engine.model(chunk[None, :-1])[0].float()
                nll += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
                count += len(chunk) - 1
            scores.append(Score(nll, count, len(text.encode())))
        return scores

    @torch.no_grad()
    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[Score]:
        """The context after an end-of-text token, as a document starts in the packed stream."""
        engine = self.engine
        ids = [(engine.encode(context), engine.tokenizer.encode(continuation).ids) for context, continuation in pairs]
        nlls = continuation_nll(ids, lambda tokens, mask: engine.model(tokens), max_len=self.score_window,
                                vocab_size=engine.config.vocab_size, device=engine.device, pad_id=engine.eos_id,
                                max_batch=max(self.spec.max_batch_size, 32))
        return [Score(nll, len(cont), len(continuation.encode()))
                for nll, (_, cont), (_, continuation) in zip(nlls, ids, pairs)]
