"""The decoder against full recompute: does decoding with the KV cache (any attention backend,
CUDA graph or not, compiled or not) compute what the model computes without one?

Comparing greedy tokens alone makes a flaky check. A vocabulary of 128K random logits has near
ties: over 72 greedy steps the smallest top-2 margin is typically half a percent of the logits'
spread. And two correct paths differ by rounding, far more than one might think when attention is
sharp: a model of Sigma-1.5B's shape at init_std 0.1 has attention scores up to 4.7e4, whose
float32 ulp is 4e-3, so kernels that add in another order can pick another of two nearly tied
keys and move the logits by up to 15% of their spread (``bench/greedy_conditioning.py``). Such a
check fails now and then on correct code. So this one teacher-forces the recompute's greedy tokens
through the decoder and compares the logits of every step, relative to their spread, within a
tolerance far below what a cache bug does (a token written at the wrong position, a position
missed or read past the length: errors of 0.1 to 1); free-running greedy tokens must then equal
recompute's up to the first step where the recompute's top-2 margin is within the measured logit
error, which only rounding can decide. Use a well-conditioned model (the training init).

``digest`` hashes the decoder's logits: equal digests across repeated runs (in one process and
across processes) show the decoder deterministic; different ones, with the same code and input,
show a race or a read of memory nothing wrote.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor

from sigma.generate import Decoder, Engine, recompute_greedy
from sigma.model import Transformer

TOLERANCE = 1e-3  # float32 at the training init: a correct cache lands near 1e-5, a cache bug near 1


@dataclass
class CacheCheck:
    backend: str
    cuda_graph: bool
    compile: bool
    max_error: float  # max over steps of max |cached - recompute| / std(recompute logits), teacher-forced
    tolerance: float
    tokens_equal: int  # free-running greedy tokens equal to recompute's, position by position
    tokens: int
    unexplained: int  # sequences whose greedy tokens diverge where the margin exceeds the logit error
    smallest_margin: float  # smallest top-2 margin of the recompute's logits, relative to their spread
    digest: str  # sha256 of the decoder's teacher-forced logits

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance and self.unexplained == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Reference:
    """Full recompute's greedy tokens for a batch of prompts, and the logits they came from."""

    prompts: list[list[int]]
    tokens: list[list[int]]
    logits: Tensor  # (steps, B, vocab) float32

    @classmethod
    def compute(cls, model: Transformer, prompts: Sequence[Sequence[int]], new_tokens: int) -> "Reference":
        found = [recompute_greedy(model, p, new_tokens) for p in prompts]
        return cls([list(p) for p in prompts], [t for t, _ in found], torch.stack([l for _, l in found], 1))


@torch.no_grad()
def check_decoder(
    model: Transformer, reference: Reference, *, attention: str = "auto", cuda_graph: bool = False,
    compile: bool | str = False, tolerance: float = TOLERANCE,
) -> CacheCheck:
    """Decode the reference's prompts (a batch of different lengths) through the cache and compare."""
    device = next(model.parameters()).device
    prompts, want, want_logits = reference.prompts, reference.tokens, reference.logits.to(device)
    new_tokens = len(want[0])
    spread = want_logits.std(-1, keepdim=True)

    decoder = Decoder(model, len(prompts), max(map(len, prompts)) + new_tokens, attention=attention,
                      cuda_graph=cuda_graph, compile=compile)
    got = [decoder.prefill(prompts)]
    for step in range(1, new_tokens):
        fed = torch.tensor([tokens[step - 1] for tokens in want], device=device)
        got.append(decoder.step(fed).clone())  # under a CUDA graph the step returns one static buffer
    got_logits = torch.stack(got)
    error = ((got_logits - want_logits).abs().amax(-1, keepdim=True) / spread).squeeze(-1)  # (steps, B)
    top2 = want_logits.topk(2, -1).values
    margin = (top2[..., 0] - top2[..., 1]) / spread.squeeze(-1)  # (steps, B)

    engine = Engine(model, attention=attention, cuda_graphs=cuda_graph, compile_step=compile)
    free = [ids for ids, _ in engine.generate_ids(prompts, new_tokens, ignore_eos=True)]
    unexplained = 0
    for b, (ids, ref) in enumerate(zip(free, want)):
        first = next((i for i, (x, y) in enumerate(zip(ids, ref)) if x != y), None)
        if first is not None and margin[first, b] > 2 * error[first, b]:
            unexplained += 1
    return CacheCheck(
        backend=attention, cuda_graph=cuda_graph, compile=bool(compile), max_error=error.max().item(),
        tolerance=tolerance, tokens_equal=sum(x == y for ids, ref in zip(free, want) for x, y in zip(ids, ref)),
        tokens=sum(map(len, want)), unexplained=unexplained, smallest_margin=margin.min().item(),
        digest=_digest(got_logits),
    )


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
