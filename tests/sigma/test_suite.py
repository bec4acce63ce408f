"""The frozen eval suite on real sources (man pages, Loghub, NL2Bash): a deterministic build,
bits per byte that equal a hand computation, chance level on a random model, and a model trained
on suite text refused."""

from __future__ import annotations

import json
import math

import pytest
import torch

from jobs.sigma_command import main as sigma
from sigma.backends.base import EngineSpec
from sigma.backends.sigma_engine import SigmaBackend
from sigma.checkpoint import find_checkpoint, save_checkpoint
from sigma.config import PRESETS
from sigma.evals.suite import ContaminationError, SuiteNotBuilt, check_uncontaminated, load_suite, score_suite
from sigma.model import Transformer
from sigma.tokenizer import train_tokenizer
from sigma.train import TrainConfig
from stages.ingest.eval_suite import ensure_suite


FROZEN_HASH = "14e01c05fdfbd2c0b4c663663ee1fafb6ba2214efe7fc8cca46e02dcac5e5198"  # docs/benchmarks.md states it


def test_the_shipped_suite_is_the_same_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the package's copy is read
    suite = load_suite("configs/eval/suite.yaml")
    assert suite.name == "system-v1" and suite.hash == FROZEN_HASH and suite.missing == []
    assert ensure_suite("configs/eval/suite.yaml").hash == FROZEN_HASH  # never built, only read
    with pytest.raises(ValueError, match="frozen"):
        ensure_suite("configs/eval/suite.yaml", rebuild=True)
    assert suite.kinds == ["config", "log", "loghub", "man", "nl2bash", "prose"] and len(suite.mc) == 200
    assert all(d["uri"].startswith(("file:///usr/", "file:///etc/", "file:///var/log/", "loghub://", "nl2bash:", "prose:"))
               for d in suite.documents)  # no path of the machine it was built on
    assert suite.is_held_out(None, "file:///elsewhere/loghub/BGL/BGL_2k.log")  # Loghub's files, wherever they are


def test_build_is_deterministic_and_frozen(small_suite, tmp_path):
    with pytest.raises(SuiteNotBuilt, match="not built"):  # the model side reads built suites only
        load_suite(small_suite, build_dir=tmp_path / "a")
    first = ensure_suite(small_suite, build_dir=tmp_path / "a")
    second = ensure_suite(small_suite, build_dir=tmp_path / "b")
    assert first.hash == second.hash and len(first.hash) == 64
    for name in ("documents.jsonl", "mc.jsonl", "held_out.json"):
        assert (first.path / name).read_bytes() == (second.path / name).read_bytes()
    assert first.kinds == ["config", "loghub", "man", "nl2bash"]
    assert len(first.mc) == 200 and all(len(i["choices"]) == 4 and len(set(i["choices"])) == 4 for i in first.mc)
    assert {i["gold"] for i in first.mc} == {0, 1, 2, 3}  # the gold command's place is hashed, not fixed
    built = (first.path / "suite.json").stat().st_mtime_ns
    assert ensure_suite(small_suite, build_dir=tmp_path / "a").hash == first.hash
    assert load_suite(small_suite, build_dir=tmp_path / "a").hash == first.hash
    assert (first.path / "suite.json").stat().st_mtime_ns == built  # read, not built again
    (first.path / "mc.jsonl").write_text("")
    with pytest.raises(ValueError, match="changed since the suite was built"):
        load_suite(small_suite, build_dir=tmp_path / "a")
    assert ensure_suite(small_suite, build_dir=tmp_path / "a", rebuild=True).hash == first.hash


@pytest.fixture(scope="module")
def random_run(small_suite, tmp_path_factory):
    """A randomly initialised sigma-tiny saved as a checkpoint, with a tokenizer trained on text."""
    suite = load_suite(small_suite)
    tokenizer = train_tokenizer([d["text"] for d in suite.documents], vocab_size=512)
    config = PRESETS["sigma-tiny"]
    torch.manual_seed(0)
    model = Transformer(config)
    run = tmp_path_factory.mktemp("random") / "run"
    state = {"step": 0, "tokens": 0, "world_size": 1, "data": [], "data_dirs": [], "model_config": config.to_dict(),
             "train_config": TrainConfig(model="sigma-tiny", seq_len=128).to_dict(), "init_from": None}
    save_checkpoint(run, model, torch.optim.AdamW(model.parameters()), state, tokenizer.to_str())
    return run


def test_bits_per_byte_is_the_hand_computation(random_run):
    backend = SigmaBackend(EngineSpec(backend="sigma", model=str(random_run)))
    pairs = [("Task: list the files here\nCommand:", " ls -la"),
             ("", "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster"), ("ctx", "")]
    scores = backend.loglikelihood(pairs)
    engine = backend.engine
    for (context, continuation), score in zip(pairs, scores):
        ids = engine.encode(context)
        target = engine.tokenizer.encode(continuation).ids
        bits = 0.0
        for token in target:  # one forward pass per token, on the whole prefix: no batching, no windows
            with torch.no_grad():
                logits = engine.model(torch.tensor([ids]))[0, -1]
            bits -= torch.log_softmax(logits.double(), -1)[token].item() / math.log(2)
            ids.append(token)
        assert score.tokens == len(target) and score.bytes == len(continuation.encode())
        if target:
            assert score.nll / math.log(2) / score.bytes == pytest.approx(bits / len(continuation.encode()), rel=1e-4)
        else:
            assert score.nll == 0


def test_multiple_choice_is_at_chance_on_a_random_model(random_run, small_suite):
    suite = load_suite(small_suite)
    result = score_suite(SigmaBackend(EngineSpec(backend="sigma", model=str(random_run))), suite)
    assert result["suite"] == {"name": "test-suite", "hash": suite.hash}
    mc = result["mc"]
    assert mc["n"] == 200 and mc["chance"] == 0.25
    lo, hi = mc["ci95"]
    assert lo <= mc["accuracy"] <= hi and lo <= 0.25 <= hi and hi - lo < 0.13
    assert set(result["bpb"]) == set(suite.kinds)
    margins = [row[1] for row in result["items"]["mc"]]
    assert mc["margin"] == pytest.approx(sum(margins) / len(margins)) and min(margins) < 0 < max(margins)
    assert mc["accuracy"] == sum(row[2] for row in result["items"]["mc"]) / 200
    assert all((m > 0) == bool(row[2]) for m, row in zip(margins, result["items"]["mc"]) if m != 0)
    # a random model is near uniform over its 512 tokens: 9 bits per token, spread over a token's bytes
    assert all(1 < v < 9 for v in result["bpb"].values()) and result["nl2cmd_bpb"] > 1


def _train(data, out, tokenizer):
    from sigma.train import train

    config = TrainConfig(model="sigma-tiny", seq_len=64, batch_size=2, max_steps=2, warmup_steps=1,
                         held_out_fraction=0.0, save_every=2, log_every=1)
    train(config, [data], out, tokenizer=tokenizer, progress=False)
    return out


@pytest.mark.slow
def test_a_model_trained_on_suite_text_is_refused(small_suite, random_run, tmp_path, ray_local):
    from jobs.curate import curate
    from pipeline.config import parse_job

    suite = load_suite(small_suite)
    man = next(d for d in suite.documents if d["kind"] == "man")
    filler = "The backup job ran at night and wrote its report to the shared folder for the team. " * 4
    rows = [{"id": "copy", "text": man["text"], "kind": "doc"}] + [
        {"id": f"doc{i}", "text": f"{filler} Entry {i}.", "kind": "doc"} for i in range(6)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    inputs = [{"type": "jsonl", "paths": [str(tmp_path / "corpus.jsonl")]}]
    raw = curate(parse_job({"inputs": inputs, "stages": []}), str(tmp_path / "raw"), progress=False)
    clean = curate(parse_job({"inputs": inputs, "stages": [{"decontaminate": {"suite": str(small_suite)}}]}),
                   str(tmp_path / "clean"), progress=False)
    assert raw["totals"]["kept"] == 7
    assert clean["totals"]["balanced"] and clean["totals"]["dropped_by_reason"] == {"suite_overlap": 1}

    tokenizer = find_checkpoint(random_run) / "tokenizer.json"
    dirty_run = _train(tmp_path / "raw", tmp_path / "dirty-run", tokenizer)
    clean_run = _train(tmp_path / "clean", tmp_path / "clean-run", tokenizer)
    with pytest.raises(ContaminationError, match=r"not decontaminated against suite test-suite .* 1 document"):
        check_uncontaminated(dirty_run, suite)
    check_uncontaminated(clean_run, suite)

    args = ["eval", "suite", "--model", str(dirty_run), "--suite", str(small_suite), "--limit", "2"]
    assert sigma(args) == 2
    assert sigma([*args, "--allow-contaminated", "--json", str(tmp_path / "dirty.json")]) == 0
    result = json.loads((tmp_path / "dirty.json").read_text())
    assert "not decontaminated" in result["contaminated"] and result["suite"]["hash"] == suite.hash
