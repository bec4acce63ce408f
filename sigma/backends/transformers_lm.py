"""Any causal LM through Hugging Face ``transformers``: a model folder, a GGUF file in one
(``gguf_file``; transformers de-quantizes it, which needs the ``gguf`` package), or a packaged
model (``smollm2``). Instruction-tuned models get chat messages rendered with their own chat
template; base models get the plain prompt. Batches are left-padded; generation stops at the
end-of-sequence token or a stop string.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from sigma.backends.base import Backend, EngineSpec, Generation, Prompt, Sampling, Score, cut_at_stop
from sigma.backends.likelihood import continuation_nll
from sigma.backends.packaged import packaged_model


def load_transformers(spec: EngineSpec, dtype: torch.dtype):
    """(model, tokenizer, model id) for a folder, a GGUF file or a packaged model name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf = spec.model, spec.gguf_file
    packaged = packaged_model(spec.model)
    if packaged is not None:
        folder, gguf = str(packaged[0]), packaged[1]
    extra = {"gguf_file": gguf} if gguf else {}
    if gguf:
        try:
            import gguf as _  # noqa: F401
        except ImportError:
            raise ImportError("loading a GGUF file with transformers needs the gguf package: pip install gguf") from None
    tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra)
    return model, tokenizer, spec.model if packaged is None and not gguf else f"{spec.model}:{gguf}"


class StopOnStrings:
    """Ends each sequence once its newest tokens spell a stop string. transformers' own
    `stop_strings` does work over the whole vocabulary at every step, which on a CPU costs more
    than a small model's forward pass; decoding a short tail per sequence costs next to nothing."""

    def __init__(self, tokenizer, stop, prompt_width: int, tail_tokens: int = 16):
        self.tokenizer, self.stop, self.width, self.tail = tokenizer, [s for s in stop if s], prompt_width, tail_tokens

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        tails = input_ids[:, max(self.width, input_ids.shape[1] - self.tail):]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        device = torch.device(spec.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = getattr(torch, spec.dtype) if spec.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model, tokenizer, self.model_id = load_transformers(spec, dtype)
        self.model = model.to(device).eval()
        self.device = device
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = spec.chat if spec.chat is not None else bool(getattr(tokenizer, "chat_template", None))
        self.max_context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_batch_size = spec.max_batch_size

    def render(self, prompt: Prompt) -> str:
        if not self.chat:
            return prompt.plain
        messages = [{"role": role, "content": content} for role, content in prompt.messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prompt.prefill

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        out: list[Generation] = []
        for start in range(0, len(prompts), self.max_batch_size):
            out += self._generate_batch(prompts[start : start + self.max_batch_size], sampling)
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        tok = self.tokenizer
        room = self.max_context - sampling.max_new_tokens
        ids = [self._encode(self.render(p))[-room:] for p in prompts]
        width = max(len(i) for i in ids)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=self.device)
        options = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=pad, eos_token_id=tok.eos_token_id)
        if sampling.temperature > 0:
            options.update(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k or None,
                           top_p=sampling.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        if sampling.stop:
            options["stopping_criteria"] = [StopOnStrings(tok, sampling.stop, width)]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(sampling.seed)
            generated = self.model.generate(input_ids=input_ids, attention_mask=mask, **options)[:, width:]
        results = []
        for prompt_ids, row in zip(ids, generated.tolist()):
            ended = tok.eos_token_id in row
            row = row[: row.index(tok.eos_token_id)] if ended else row
            text, stopped = cut_at_stop(tok.decode(row, skip_special_tokens=True), sampling.stop)
            reason = "stop" if stopped else "eos" if ended else "length"
            results.append(Generation(text, reason, len(prompt_ids), len(row) + int(ended)))
        return results

    @torch.no_grad()
    def score(self, texts: Sequence[str], window: int | None = None) -> list[Score]:
        """Each text after the beginning- (else end-) of-sequence token, in windows of the context."""
        tok = self.tokenizer
        first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        window = min(window or 1024, self.max_context)
        scores = []
        for text in texts:
            ids = torch.tensor([first] + tok(text, add_special_tokens=False)["input_ids"], device=self.device)
            nll, count = 0.0, 0
            for start in range(0, len(ids) - 1, window):
                chunk = ids[start : start + window + 1]
                logits = self.model(input_ids=chunk[None, :-1]).logits[0].float()
                nll += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
                count += len(chunk) - 1
            scores.append(Score(nll, count, len(text.encode())))
        return scores


    @torch.no_grad()
    def loglikelihood(self, pairs: Sequence[tuple[str, str]], window: int = 2048) -> list[Score]:
        """Plain text (no chat template): the context after the beginning- (else end-) of-sequence
        token; windows of the model's context, at most ``window`` tokens."""
        tok = self.tokenizer
        first = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ids = [([first] + tok(context, add_special_tokens=False)["input_ids"],
                tok(continuation, add_special_tokens=False)["input_ids"]) for context, continuation in pairs]
        nlls = continuation_nll(ids, lambda tokens, mask: self.model(input_ids=tokens, attention_mask=mask).logits,
                                max_len=min(window, self.max_context), vocab_size=self.model.config.vocab_size,
                                device=self.device, pad_id=tok.pad_token_id, max_batch=self.max_batch_size)
        return [Score(nll, len(cont), len(continuation.encode()))
                for nll, (_, cont), (_, continuation) in zip(nlls, ids, pairs)]


def save_as_folder(spec: EngineSpec, out_dir: str) -> str:
    """Write the model as a plain Hugging Face folder (safetensors, tokenizer, chat template), e.g.
    a packaged GGUF de-quantized for servers that cannot read GGUF files (vLLM >= 0.30)."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    model, tokenizer, _ = load_transformers(spec, torch.bfloat16)
    config = model.config
    if hasattr(config, "quantization_config"):  # the weights are de-quantized already
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(model.state_dict())
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(out)
    return str(out)
