"""The inference engine on a checkpoint trained by ``sigma train``: the cache against full
recompute, batches against one-by-one, stop strings, seeded sampling, memory accounting, the
``sigma generate`` command, and selective V's effect on held-out perplexity and greedy outputs."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sigma.config import PRESETS
from sigma.generate import Decoder, Engine, decode_nll, greedy_by_recompute, perplexity
from sigma.kv_cache import (
    KVCache, kv_bytes_per_token, kv_bytes_per_token_per_layer, kv_cache_bytes, max_batch_size, weight_bytes,
)
from sigma.model import Transformer
from sigma.sampling import SamplingParams, filter_logits, sample

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["NAME\n       grep - print lines", "2015-10-18 18:01:47,978 INFO [main]", "ls -l", "SYNOPSIS\n       tar"]


@pytest.fixture(scope="module")
def run(curated_man, curated_logs, tokenizer_file, tmp_path_factory, subprocess_env) -> Path:
    """sigma-tiny trained briefly by the ``sigma train`` command."""
    out = tmp_path_factory.mktemp("gen") / "run"
    subprocess.run(
        [sys.executable, "-m", "sigma.model_commands", "train", str(PROJECT_ROOT / "configs/train/sigma-tiny.yaml"),
         "--data", str(curated_man), str(curated_logs), "--out", str(out), "--tokenizer", str(tokenizer_file),
         "--steps", "120", "--eval-every", "120", "--save-every", "120", "--log-every", "40", "--no-progress"],
        check=True, cwd=PROJECT_ROOT, env=subprocess_env,
    )
    return out


@pytest.fixture(scope="module")
def engine(run) -> Engine:
    return Engine.load(run, device="cpu")


@pytest.fixture(scope="module")
def held_out(run, curated_man, curated_logs) -> torch.Tensor:
    """The run's own held-out windows (the documents training never saw), 128 + 1 tokens each."""
    from sigma.shards import ShardSet
    from sigma.tokenizer import load_tokenizer
    from sigma.train import TrainConfig, _held_out_sets

    checkpoint = run / "checkpoints" / "step_00000120"
    config = TrainConfig.from_dict(json.loads((checkpoint / "state.json").read_text())["train_config"])
    sets = _held_out_sets([ShardSet.open(curated_man), ShardSet.open(curated_logs)],
                          load_tokenizer(checkpoint), config.sequence_length(), config.override(eval_sequences=16))
    return torch.cat([windows for _, windows in sets])


@pytest.mark.slow
def test_cached_greedy_equals_full_recompute(engine):
    prompts = [engine.encode(p) for p in PROMPTS]
    cached = engine.generate_ids(prompts, 40, ignore_eos=True)
    for prompt, (ids, reason) in zip(prompts, cached):
        assert reason == "length"
        assert ids == greedy_by_recompute(engine.model, prompt, 40)


LAYOUTS = [(4, 1, 2, 16, 16), (4, 2, 2, 16, 16), (4, 4, 4, 16, 16), (6, 1, 3, 16, 32), (8, 4, 2, 16, 16)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: "q{}k{}v{}-d{}/{}".format(*l))
def test_cache_equals_recompute_for_head_layouts(layout):
    n_q, n_k, n_v, d_qk, d_v = layout
    config = PRESETS["sigma-tiny"].replace(n_q_heads=n_q, n_k_heads=n_k, n_v_heads=n_v, d_qk_head=d_qk, d_v_head=d_v,
                                           init_std=0.1)  # larger weights than at init: fewer near-ties
    torch.manual_seed(0)
    model = Transformer(config).eval()
    prompts = [torch.randint(0, 512, (n,)).tolist() for n in (9, 1, 20)]
    backends = ["torch"] + (["concat-v"] if n_v % n_k == 0 else [])
    for backend in backends:
        cached = Engine(model, attention=backend).generate_ids(prompts, 16)
        assert [ids for ids, _ in cached] == [greedy_by_recompute(model, p, 16) for p in prompts], backend


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_backend_equals_recompute():
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
    torch.manual_seed(0)
    model = Transformer(PRESETS["sigma-tiny"].replace(init_std=0.1)).eval()
    prompts = [torch.randint(0, 512, (n,)).tolist() for n in (5, 12)]
    cached = Engine(model, attention="triton").generate_ids(prompts, 6)
    assert [ids for ids, _ in cached] == [greedy_by_recompute(model, p, 6) for p in prompts]


def test_a_batch_equals_its_prompts_one_by_one(engine):
    together = engine.generate(PROMPTS, 24, ignore_eos=True)
    for prompt, completion in zip(PROMPTS, together):
        alone = engine.generate([prompt], 24, ignore_eos=True)[0]
        assert completion.token_ids == alone.token_ids and completion.text == alone.text
    assert [c.prompt_tokens for c in together] == [len(engine.encode(p)) for p in PROMPTS]
    assert len({c.prompt_tokens for c in together}) > 1


def test_decoding_through_the_cache_gives_the_forward_loss(engine, held_out):
    windows = held_out[:6]
    want = engine.model(windows[:, :-1], windows[:, 1:]).item()
    assert decode_nll(engine.model, windows, attention="torch") == pytest.approx(want, abs=1e-4)


def test_stop_strings_and_max_tokens(engine):
    free = engine.generate([PROMPTS[0]], 40, ignore_eos=True)[0]
    assert free.finish_reason == "length" and free.completion_tokens == 40
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 3]
    cut = free.text[: free.text.find(stop)]
    stopped = engine.generate([PROMPTS[0]], 40, stop=["@@never@@", stop], ignore_eos=True)[0]
    assert stopped.finish_reason == "stop" and stopped.text == cut
    assert stopped.completion_tokens < 40 and stopped.token_ids == free.token_ids[: stopped.completion_tokens]
    assert engine.generate([PROMPTS[0]], 5)[0].completion_tokens <= 5


def test_sampling_is_seeded(engine):
    def run_(seed, **kw):
        return [c.token_ids for c in engine.generate(PROMPTS[:2], 20, temperature=1.0, seed=seed, ignore_eos=True, **kw)]

    assert run_(1) == run_(1)
    assert run_(1) != run_(2)
    assert run_(1, top_p=0.9) == run_(1, top_p=0.9)
    greedy = [c.token_ids for c in engine.generate(PROMPTS[:2], 20, ignore_eos=True)]
    assert run_(3, top_k=1) == greedy


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda **kw: torch.isfinite(filter_logits(logits, SamplingParams(1.0, **kw))).tolist()[0]  # noqa: E731
    assert kept(top_k=2) == [True, True, False, False]
    assert kept(top_p=0.8) == [True, True, False, False]  # 0.5 + 0.3 reaches 0.8: the nucleus is two tokens
    assert kept(top_p=0.81) == [True, True, True, False]
    assert kept(top_p=0.1) == [True, False, False, False]
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits, SamplingParams(1.0, top_p=0.8), gen) for _ in range(200)])
    assert set(draws.flatten().tolist()) == {0, 1}
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)


def test_memory_accounting_is_exact():
    sigma, gqa = PRESETS["sigma-1.5b"], PRESETS["sigma-1.5b-gqa"]
    assert kv_bytes_per_token_per_layer(sigma) == (4 * 64 + 16 * 64) * 2
    assert kv_bytes_per_token_per_layer(gqa) == 2 * 16 * 64 * 2
    assert kv_bytes_per_token(sigma) / kv_bytes_per_token(gqa) == pytest.approx(1 - 0.375)
    tiny = PRESETS["sigma-tiny"]
    for dtype in (torch.float32, torch.bfloat16):
        cache = KVCache(tiny, 3, 100, dtype=dtype)
        assert cache.nbytes == kv_cache_bytes(tiny, 3, 100, dtype)
    memory = 80 * 2**30
    for config in (sigma, gqa):
        fits = max_batch_size(config, 32768, memory)
        assert fits > 0
        assert weight_bytes(config) + fits * 32768 * kv_bytes_per_token(config) <= memory
        assert weight_bytes(config) + (fits + 1) * 32768 * kv_bytes_per_token(config) > memory * 0.97
    assert max_batch_size(sigma, 32768, memory) > max_batch_size(gqa, 32768, memory) * 1.5


def test_finished_sequences_stop_advancing():
    torch.manual_seed(0)
    model = Transformer(PRESETS["sigma-tiny"]).eval()
    decoder = Decoder(model, 2, 8, attention="torch")
    decoder.prefill([[1, 2, 3], [4]])
    decoder.step(torch.tensor([5, 6]), torch.tensor([1, 0], dtype=torch.int32))
    assert decoder.cache.lengths.tolist() == [4, 1] and decoder.host_lengths == [4, 1]


def test_generate_command_on_a_trained_checkpoint(run, subprocess_env):
    done = subprocess.run(
        [sys.executable, "-m", "sigma.model_commands", "generate", str(run), "--prompt", "NAME\\n       ls", "--prompt", "ls -l",
         "--max-new-tokens", "12", "--stop", "@@", "--json", "--device", "cpu"],
        check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=subprocess_env,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["prompt"] for line in lines] == ["NAME\n       ls", "ls -l"]
    assert all(0 < line["completion_tokens"] <= 12 and line["prompt_tokens"] > 1 for line in lines)
    assert all(line["finish_reason"] in ("length", "eos") for line in lines)


def test_selective_v_on_held_out_text(engine, held_out, capsys):
    """Top-k V reading keeps held-out perplexity close to full attention when k is a modest
    fraction of the context, and is exact once k covers it. Windows are 128 tokens: k = 32 reads
    a quarter of the V rows at the end of a window (the paper's k = 100 at 32K reads 0.3%)."""
    windows = held_out[:8]
    full = decode_nll(engine.model, windows, attention="torch")
    ratios = {}
    for top_k in (8, 16, 32, 128):
        ratios[top_k] = perplexity(decode_nll(engine.model, windows, attention="torch", selective_v=top_k)) / perplexity(full)
    prompts = [engine.encode(p) for p in PROMPTS]
    greedy = [ids for ids, _ in engine.generate_ids(prompts, 32, ignore_eos=True)]
    agreement = {}
    for top_k in (8, 32):
        selective = Engine(engine.model, engine.tokenizer, attention="torch", selective_v=top_k)
        ids = [ids for ids, _ in selective.generate_ids(prompts, 32, ignore_eos=True)]
        agreement[top_k] = sum(a == b for x, y in zip(ids, greedy) for a, b in zip(x, y)) / sum(map(len, greedy))
    with capsys.disabled():
        print(f"\nselective V: held-out ppl {perplexity(full):.3f}; ratio to full by k: "
              + ", ".join(f"{k}: {r:.4f}" for k, r in ratios.items())
              + "; greedy tokens equal to full attention: " + ", ".join(f"k={k}: {a:.0%}" for k, a in agreement.items()))
    assert ratios[128] == pytest.approx(1.0, abs=1e-6)
    assert ratios[32] < 1.02 and ratios[8] < 1.25
    assert ratios[8] >= ratios[32] - 1e-3
    assert agreement[32] > 0.5 and agreement[32] >= agreement[8]  # position by position: one early change shifts the rest


def test_the_decoder_check_passes_on_the_cache_and_fails_on_planted_bugs(monkeypatch):
    """``sigma.decode_check`` compares teacher-forced logits within a tolerance, so near ties do not
    make it flaky; three cache bugs that a greedy comparison could miss by luck must fail it."""
    from sigma import kv_cache
    from sigma.decode_check import TOLERANCE, Reference, check_decoder

    torch.manual_seed(0)
    model = Transformer(PRESETS["sigma-tiny"]).eval()
    gen = torch.Generator().manual_seed(1)
    reference = Reference.compute(model, [torch.randint(0, 512, (n,), generator=gen).tolist() for n in (30, 7, 1)], 12)
    digests = {}
    for backend in ("torch", "concat-v"):
        found = check_decoder(model, reference, attention=backend)
        assert found.ok and found.max_error < TOLERANCE / 100 and found.tokens_equal == found.tokens == 36, backend
        digests[backend] = found.digest
    assert check_decoder(model, reference, attention="torch").digest == digests["torch"]  # the same logits, bit for bit

    begin = kv_cache.CachedAttention.begin_step

    def write_over_the_last_token(self, k_layer, v_layer, k, v, positions):
        positions = (positions - 1).clamp(min=0)
        k_layer[self._rows, :, positions] = k[:, :, 0]
        v_layer[self._rows, :, positions] = self.v_rows(v)[:, :, 0]

    def miss_the_new_token(self, max_length):
        begin(self, max_length)
        self.step_lengths = self.cache.lengths.clone()

    def read_past_the_length(self, max_length):
        begin(self, max_length)
        self.step_lengths = self.cache.lengths + 2

    for owner, name, bug in ((kv_cache.KVCache, "write_step", write_over_the_last_token),
                             (kv_cache.CachedAttention, "begin_step", miss_the_new_token),
                             (kv_cache.CachedAttention, "begin_step", read_past_the_length)):
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, bug)
            found = check_decoder(model, reference, attention="torch")
        assert not found.ok and found.max_error > 100 * TOLERANCE, bug.__name__


def test_compiled_decode_blocks_share_one_graph_and_equal_the_eager_step():
    """``Decoder(compile=...)`` compiles a block's step once for every layer (the cache update
    and attention left outside); on the CPU with a graph-counting backend, the logits are the
    eager step's, bit for bit."""
    graphs = []

    def counting(gm, inputs):
        graphs.append(gm)
        return gm.forward

    counts = []
    for layers in (2, 4):
        torch._dynamo.reset()
        graphs.clear()
        torch.manual_seed(0)
        model = Transformer(PRESETS["sigma-tiny"].replace(n_layers=layers, init_std=0.1)).eval()
        outputs = []
        for compile in (False, counting):
            decoder = Decoder(model, 2, 32, attention="torch", compile=compile)
            logits = [decoder.prefill([[1, 2, 3], [4]])]
            for _ in range(5):
                logits.append(decoder.step(logits[-1].argmax(-1)))
            outputs.append(torch.stack(logits))
        assert torch.equal(outputs[0], outputs[1])
        counts.append(len(graphs))
    assert counts[0] == counts[1] > 0  # as many graphs for four layers as for two


@pytest.mark.slow
def test_device_suite_smoke_runs_on_cpu_without_ray(tmp_path, subprocess_env):
    """bench/gpu_suite.py, the one command of a device run, through every part on tiny shapes,
    with ``import ray`` failing as it does on the GPU machine; rows are written as measured."""
    no_ray = tmp_path / "no_ray" / "ray"
    no_ray.mkdir(parents=True)
    (no_ray / "__init__.py").write_text("raise ImportError('ray is not installed on the device machine')\n")
    env = {**subprocess_env, "PYTHONPATH": os.pathsep.join(filter(None, [str(no_ray.parent), subprocess_env.get("PYTHONPATH")]))}
    out = tmp_path / "suite"
    done = subprocess.run([sys.executable, "bench/gpu_suite.py", "--smoke", "--out", str(out)],
                          check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env)
    assert done.stdout.rstrip().splitlines()[-1].startswith("suite wall time")
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    parts = [r for r in rows if r["kind"] == "part"]
    assert [(p["name"], p["status"]) for p in parts] == [
        ("decode-kernels", "ok"), ("decode-step", "ok"), ("train", "ok"), ("train-gqa", "ok")]
    assert not [r for r in rows if "error" in r]
    checks = [r for r in rows if r["kind"] == "check"]
    assert {c["name"] for c in checks} >= {"decoder vs recompute (torch)", "decoder vs recompute (concat-v)"}
    assert all(c["ok"] for c in checks)
    assert {r["variant"] for r in rows if r["kind"] == "copy"} >= {"copy_, eager", "copy_ in a CUDA graph"}
    assert {r["kernel"].split(" (")[0] for r in rows if r["kind"] == "ket"} >= {"torch", "SDPA concat-V", "SDPA"}
    assert all(r["tokens_per_s"] > 0 and r["floor_bytes"] > 0 for r in rows if r["kind"] == "model")
    memory = {r["model"]: r for r in rows if r["kind"] == "memory"}
    assert memory["DiffQKV 32/4/16"]["kv_bytes_per_token_layer"] == (4 + 16) * 64 * 4  # float32 on the CPU
    train = {r["preset"]: r for r in rows if r["kind"] == "train"}
    assert [r["loss_chunk"] for r in rows if r["kind"] == "train" and r["preset"] == "sigma-tiny"] == [0, 64]  # plain, chunked
    assert train["sigma-tiny-gqa"]["step_s"] > 0
    tables = (out / "tables.md").read_text()
    assert "| step time sigma-tiny / GQA |" in tables and "| decode-step | ok |" in tables
    assert (out / "suite.log").read_text().count("== ") >= 4


def test_the_engine_imports_without_ray_or_the_pipeline(subprocess_env):
    code = (
        "import sys, sigma.generate, sigma.kv_cache, sigma.sampling, sigma.kernels.decode;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'pipeline', 'stages', 'jobs', 'triton')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, env=subprocess_env)
