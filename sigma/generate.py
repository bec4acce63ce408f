"""Generation with the asymmetric KV cache: prefill, decode, sampling, stop strings, batches.

The Python API the rewrite stage calls::

    engine = Engine.load("runs/tiny")  # a run folder or a step_* checkpoint
    completions = engine.generate(["man ls", "grep -r"], max_new_tokens=64, temperature=0.7,
                                  top_p=0.9, stop=["\\n\\n"], seed=0)
    completions[0].text, completions[0].completion_tokens, completions[0].finish_reason

A batch of prompts of different lengths is prefilled right-padded in one forward pass; each
sequence then decodes at its own position (``sigma.kv_cache``), so every sequence computes what
it would compute alone. Decoding on CUDA replays a captured CUDA graph of the whole step (one
launch for all layers), its blocks optionally compiled (``compile_step``, gpt-fast's recipe: static
shapes, a static cache, no host syncs in the step); attention runs through ``sigma.kernels.decode``. A prompt starts with the
end-of-text token, as a document does in the packed training stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sigma.chat_template import ChatSettings, load_chat_settings
from sigma.checkpoint import load_weights, read_checkpoint
from sigma.config import ModelConfig
from sigma.kv_cache import KVCache
from sigma.model import Transformer, rope_tables
from sigma.sampling import SamplingParams, sample
from sigma.tokenizer import TOKENIZER_FILE, end_of_text_id, load_tokenizer


@dataclass
class Completion:
    prompt: str
    text: str  # the generated text, cut before the first stop string; no end-of-text token
    token_ids: list[int]  # every generated token, the end-of-text token included when it came
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string), "eos" (the end-of-text token) or "length"


class Decoder:
    """One batch's decoding state: the KV cache, static step buffers and, optionally, a CUDA graph."""

    def __init__(self, model: Transformer, batch: int, capacity: int, *, attention: str = "auto",
                 selective_v: int | None = None, cuda_graph: bool = False, cache_dtype: torch.dtype | None = None,
                 compile: bool | str = False):
        param = next(model.parameters())
        self.model, self.device = model, param.device
        self.cache = KVCache(model.config, batch, capacity, self.device, cache_dtype or param.dtype)
        self.attention = self.cache.attention(attention, selective_v)
        self.layers = self.attention.layers(compiled=bool(compile))
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.active = torch.ones(batch, dtype=torch.int32, device=self.device)
        self.host_lengths = [0] * batch
        # ``compile`` (True, or a torch.compile backend): each block's step compiled once, static
        # shapes, and shared by every layer; the cache update and decode attention stay outside.
        backend = "inductor" if compile is True else compile
        self._block = torch.compile(decode_block, backend=backend, dynamic=False) if compile else decode_block
        self.graph: torch.cuda.CUDAGraph | None = None
        if cuda_graph:
            self._capture()

    @property
    def batch(self) -> int:
        return self.cache.batch

    @torch.no_grad()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> Tensor:
        """Fill the cache with the prompts; returns float32 logits (B, vocab) for their next token."""
        if len(prompts) != self.batch:
            raise ValueError(f"{len(prompts)} prompts for a decoder of batch {self.batch}")
        lengths = [len(p) for p in prompts]
        if min(lengths) < 1 or max(lengths) > self.cache.capacity:
            raise ValueError(f"prompt lengths {min(lengths)}..{max(lengths)} outside 1..{self.cache.capacity}")
        tokens = torch.zeros(self.batch, max(lengths), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            tokens[row, : len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
        self.attention.prefill = True
        hidden = self.model.hidden_states(tokens.to(self.device), caches=self.layers)
        last = torch.as_tensor(lengths, device=self.device) - 1
        self.cache.lengths.copy_(torch.as_tensor(lengths, dtype=torch.int32))
        self.host_lengths = lengths
        return self.model.output(hidden[torch.arange(self.batch, device=self.device), last]).float()

    def _step(self, max_length: int | None) -> Tensor:
        """One token per sequence through every layer: ``Transformer.hidden_states`` at one position,
        written out so that its blocks can be compiled. No host syncs: a CUDA graph captures it."""
        model = self.model
        self.attention.begin_step(max_length)
        positions = self.cache.lengths.long().unsqueeze(1)
        cos, sin = model.rope_cos[positions].unsqueeze(1), model.rope_sin[positions].unsqueeze(1)
        x = model.tok_embeddings(self.tokens)
        for block, layer in zip(model.layers, self.layers):
            x = self._block(block, x, cos, sin, layer)
        logits = model.output(model.norm(x)[:, -1]).float()
        self.cache.lengths += self.active
        return logits

    @torch.no_grad()
    def step(self, tokens: Tensor, active: Tensor | None = None) -> Tensor:
        """Append one token per sequence; returns float32 logits (B, vocab) for the next one.

        Inactive sequences (``active[b] == 0``, finished ones) are computed but do not advance.
        """
        self.tokens.copy_(tokens.view(-1, 1))
        if active is not None:
            self.active.copy_(active)
        if max(self.host_lengths) >= self.cache.capacity:
            raise ValueError(f"the KV cache is full ({self.cache.capacity} positions)")
        if self.graph is not None:
            self.graph.replay()
            logits = self.static_logits
        else:
            logits = self._step(max(self.host_lengths) + 1)
        steps = [1] * self.batch if active is None else active.tolist()
        self.host_lengths = [length + int(s) for length, s in zip(self.host_lengths, steps)]
        return logits

    def _capture(self) -> None:
        """Record the step as a CUDA graph. Warm-up steps run with every sequence inactive on the
        empty cache, so they write only position 0, which the prefill overwrites."""
        with torch.no_grad():
            self.active.zero_()
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step(None)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_logits = self._step(None)
            self.active.fill_(1)
            self.cache.lengths.zero_()


def decode_block(block, x: Tensor, cos: Tensor, sin: Tensor, layer_cache) -> Tensor:
    """One block of a decode step; the unit that ``Decoder(compile=True)`` compiles."""
    return block(x, cos, sin, None, layer_cache)


@dataclass
class _Sequence:
    limit: int
    ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None


class Engine:
    """A model and its tokenizer, ready to generate; see the module docstring."""

    def __init__(self, model: Transformer, tokenizer=None, *, attention: str = "auto", selective_v: int | None = None,
                 cuda_graphs: bool | None = None, compile_step: bool = False, max_batch_size: int = 16):
        self.model = model.eval()
        self.config: ModelConfig = model.config
        self.device = next(model.parameters()).device
        self.tokenizer = tokenizer
        self.eos_id = end_of_text_id(tokenizer) if tokenizer is not None else None
        self.end_ids = {self.eos_id}  # tokens that end a sequence; a chat model adds its end-of-turn token
        self.attention, self.selective_v = attention, selective_v
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self.compile_step = compile_step  # compile each block's decode step (worth it on a GPU, for long runs)
        self.max_batch_size = max_batch_size
        self.chat_settings: ChatSettings | None = None  # a converted model's chat template and special tokens

    @classmethod
    def load(cls, checkpoint: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
             **options) -> "Engine":
        """A run folder (its latest checkpoint) or a ``step_*`` folder written by ``sigma train``.

        Defaults: CUDA if available, bf16 on CUDA and float32 on the CPU.
        """
        found = read_checkpoint(checkpoint)
        config = ModelConfig.from_dict(found.state["model_config"])
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model = Transformer(config)
        load_weights(found, model)
        model = to_inference(model, device, dtype)
        engine = cls(model, load_tokenizer(found.path / TOKENIZER_FILE), **options)
        engine.chat_settings = load_chat_settings(found.path)
        end_of_turn = engine.chat_settings and engine.chat_settings.special_tokens.get("eos_token")
        if end_of_turn and engine.tokenizer.token_to_id(end_of_turn) is not None:
            engine.end_ids.add(engine.tokenizer.token_to_id(end_of_turn))
        return engine

    def encode(self, prompt: str) -> list[int]:
        if self.tokenizer is None:
            raise ValueError("this engine has no tokenizer: pass token ids to generate_ids")
        return [self.eos_id, *self.tokenizer.encode(prompt).ids]

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 256, *, temperature: float = 0.0, top_k: int = 0,
        top_p: float = 1.0, stop: Sequence[str] = (), seed: int = 0, ignore_eos: bool = False,
    ) -> list[Completion]:
        """Complete each prompt; same prompts, settings and seed give the same completions."""
        prompt_ids = [self.encode(p) for p in prompts]
        results = self.generate_ids(
            prompt_ids, max_new_tokens, sampling=SamplingParams(temperature, top_k, top_p), stop=stop, seed=seed,
            ignore_eos=ignore_eos,
        )
        completions = []
        for prompt, ids, (generated, reason) in zip(prompts, prompt_ids, results):
            text_ids = generated[:-1] if reason == "eos" else generated
            text = self.tokenizer.decode(text_ids)
            if reason == "stop":
                text = text[: _first_stop(text, stop)]
            completions.append(Completion(prompt, text, generated, len(ids), len(generated), reason))
        return completions

    @torch.no_grad()
    def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, *, sampling: SamplingParams = SamplingParams(),
        stop: Sequence[str] = (), seed: int = 0, ignore_eos: bool = False,
    ) -> list[tuple[list[int], str]]:
        """Generated ids and the finish reason per prompt, in batches of ``max_batch_size``."""
        if stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer")
        generator = torch.Generator(self.device).manual_seed(seed)
        results: list[tuple[list[int], str]] = []
        for start in range(0, len(prompt_ids), self.max_batch_size):
            chunk = prompt_ids[start : start + self.max_batch_size]
            results.extend(self._generate_batch(chunk, max_new_tokens, sampling, stop, generator, ignore_eos))
        return results

    def _generate_batch(self, prompts, max_new_tokens, sampling, stop, generator, ignore_eos):
        room = self.config.max_seq_len
        for prompt in prompts:
            if not 0 < len(prompt) < room:
                raise ValueError(f"a prompt of {len(prompt)} tokens leaves no room in max_seq_len {room}")
        sequences = [_Sequence(limit=min(max_new_tokens, room - len(p))) for p in prompts]
        capacity = max(len(p) + s.limit for p, s in zip(prompts, sequences))
        decoder = Decoder(self.model, len(prompts), capacity, attention=self.attention, selective_v=self.selective_v,
                          cuda_graph=self.cuda_graphs, compile=self.compile_step)
        logits = decoder.prefill(prompts)
        stop_window = max((len(s.encode()) for s in stop), default=0) + 1
        while True:
            tokens = sample(logits, sampling, generator)
            for sequence, token in zip(sequences, tokens.tolist()):
                if sequence.finish_reason is not None:
                    continue
                sequence.ids.append(token)
                if token in self.end_ids and not ignore_eos:
                    sequence.finish_reason = "eos"
                elif stop and _first_stop(self.tokenizer.decode(sequence.ids[-stop_window:]), stop) is not None:
                    sequence.finish_reason = "stop"
                elif len(sequence.ids) >= sequence.limit:
                    sequence.finish_reason = "length"
            active = [s.finish_reason is None for s in sequences]
            if not any(active):
                break
            logits = decoder.step(tokens, torch.tensor(active, dtype=torch.int32, device=self.device))
        return [(s.ids, s.finish_reason) for s in sequences]


def _first_stop(text: str, stop: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(found) if found else None


def to_inference(model: Transformer, device: torch.device | str, dtype: torch.dtype) -> Transformer:
    """The model on ``device`` in ``dtype`` for inference, RoPE tables kept in float32."""
    model = model.to(device=device, dtype=dtype).eval()
    model.rope_cos, model.rope_sin = rope_tables(model.config, model.config.max_seq_len, device=torch.device(device))
    return model


@torch.no_grad()
def greedy_by_recompute(model: Transformer, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """Greedy generation without a cache: the whole sequence is run again for every token."""
    return recompute_greedy(model, prompt_ids, max_new_tokens)[0]


@torch.no_grad()
def recompute_greedy(model: Transformer, prompt_ids: Sequence[int], max_new_tokens: int) -> tuple[list[int], Tensor]:
    """Greedy tokens without a cache, and the float32 logits (max_new_tokens, vocab) each came from."""
    device = next(model.parameters()).device
    tokens, logits = list(prompt_ids), []
    for _ in range(max_new_tokens):
        logits.append(model(torch.tensor([tokens], device=device))[0, -1].float())
        tokens.append(int(logits[-1].argmax()))
    return tokens[len(prompt_ids) :], torch.stack(logits)


@torch.no_grad()
def decode_nll(
    model: Transformer, windows: Tensor, *, attention: str = "auto", selective_v: int | None = None
) -> float:
    """Mean next-token cross-entropy of ``windows`` (N, T) computed through the cache: the first
    token is prefilled and the rest fed one decode step at a time (teacher forcing), so every
    prediction after the first goes through the decode attention, selective V included."""
    batch, seq = windows.shape
    device = next(model.parameters()).device
    windows = windows.to(device)
    decoder = Decoder(model, batch, seq, attention=attention, selective_v=selective_v)
    logits = decoder.prefill(windows[:, :1].tolist())
    total = torch.zeros((), dtype=torch.float64, device=device)
    for t in range(1, seq):
        total += F.cross_entropy(logits, windows[:, t], reduction="sum").double()
        if t < seq - 1:
            logits = decoder.step(windows[:, t])
    return (total / (batch * (seq - 1))).item()


def perplexity(nll: float) -> float:
    return math.exp(min(nll, 50.0))
