"""The vLLM backend in process (`vllm.LLM`) on SmolLM2 exported to a plain folder. Needs vLLM
(`make test-vllm`); skipped where it is not installed, as in the main suite. Runs after the
server tests (file order), so the two never hold the CPU at once."""

import os

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")
pytest.importorskip("gguf", reason="exporting SmolLM2 from its GGUF file needs the gguf package")

from sigma.backends.base import EngineSpec, Prompt, Sampling, load_backend  # noqa: E402


def test_in_process_backend(tmp_path_factory):
    os.environ.setdefault("SIGMA_CACHE", str(tmp_path_factory.mktemp("cache")))
    backend = load_backend(EngineSpec(backend="vllm", model="smollm2", dtype="bfloat16", max_model_len=2048))
    assert backend.name == "vllm" and backend.chat and backend.max_context == 2048
    prompts = [Prompt((("user", "What does the ls command do? Answer in one sentence."),), "ls"),
               Prompt((("user", "Explain what a log file is."),), "log")]
    out = backend.generate(prompts, Sampling(max_new_tokens=40))
    assert all(g.text.strip() and g.finish_reason in ("eos", "length") for g in out)
    stopped = backend.generate(prompts[:1], Sampling(max_new_tokens=40, stop=(" the ",)))[0]
    assert stopped.finish_reason == "stop" and " the " not in stopped.text
    assert backend.count_tokens("ls -l") > 0
