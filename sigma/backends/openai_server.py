"""A model behind an OpenAI-compatible HTTP server (``vllm serve``, or any server speaking the
same API): chat messages go to ``/v1/chat/completions``, plain prompts to ``/v1/completions``.

Requests of a batch are sent side by side (``max_batch_size`` at a time) so the server can batch
them; each carries its own seed (the batch seed plus its index). vLLM's ``stop_reason`` field tells
a stop string from the end of sequence; a server without it reports both as "stop".
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from sigma.backends.base import Backend, EngineSpec, Generation, Prompt, Sampling, cut_at_stop


class ServerError(RuntimeError):
    pass


class OpenAIServerBackend(Backend):
    name = "vllm-server"

    def __init__(self, spec: EngineSpec, timeout_s: float = 600):
        self.spec = spec
        self.url = spec.url.rstrip("/")
        if self.url.endswith("/v1"):
            self.url = self.url[:-3]
        self.model_id = spec.model
        self.chat = True if spec.chat is None else spec.chat
        self.max_batch_size = spec.max_batch_size
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise ValueError(f"api_key_env: the environment variable {spec.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        served = [m["id"] for m in self._call("GET", "/v1/models")["data"]]
        if self.model_id not in served:
            raise ValueError(f"{self.url} serves {served}, not {self.model_id!r}")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServerError(f"{method} {self.url}{path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        except urllib.error.URLError as exc:
            raise ServerError(f"{method} {self.url}{path}: {exc.reason}") from None

    def _one(self, prompt: Prompt, sampling: Sampling, seed: int) -> Generation:
        body = {"model": self.model_id, "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "seed": seed}
        if sampling.top_k > 0:
            body["top_k"] = sampling.top_k
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if self.chat:
            body["messages"] = [{"role": role, "content": content} for role, content in prompt.messages]
            if prompt.prefill:  # vLLM's extension: the answer continues the assistant turn begun here
                body["messages"].append({"role": "assistant", "content": prompt.prefill})
                body.update(continue_final_message=True, add_generation_prompt=False)
            reply = self._call("POST", "/v1/chat/completions", body)
            choice = reply["choices"][0]
            text = choice["message"].get("content") or ""
        else:
            body["prompt"] = prompt.plain
            reply = self._call("POST", "/v1/completions", body)
            choice = reply["choices"][0]
            text = choice.get("text") or ""
        text, _ = cut_at_stop(text, sampling.stop)
        if choice.get("finish_reason") == "length":
            reason = "length"
        else:
            reason = "stop" if isinstance(choice.get("stop_reason"), str) else "eos"
        usage = reply.get("usage") or {}
        return Generation(text, reason, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_batch_size, len(prompts)))) as pool:
            return list(pool.map(lambda pair: self._one(pair[1], sampling, sampling.seed + pair[0]), enumerate(prompts)))
