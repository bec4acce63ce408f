"""The flywheel loop: two rounds with sigma-tiny on real logs, run whole in-process and run as
`python -m jobs.flywheel` killed with SIGKILL twice (during round 1's synthesis, during round 2's
training) and started again: the same table of rounds. Round 2 curates round 1's synthetic rows
with its new sources through the same filters."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from jobs.flywheel import Flywheel
from jobs.flywheel_config import parse_flywheel
from pipeline.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _docs(loghub: Path, systems: list[str], per_system: int, lines: int = 10) -> list[dict]:
    docs = []
    for system in systems:
        text = (loghub / system / f"{system}_2k.log").read_text().splitlines()
        docs += [{"id": f"{system}-{i}", "text": "\n".join(text[i * lines:(i + 1) * lines]), "kind": "log",
                  "source": "logs", "uri": f"{system}#{i}"} for i in range(per_system)]
    return docs


@pytest.fixture(scope="module")
def config(tmp_path_factory, loghub, nl2bash, small_suite) -> Path:
    base = tmp_path_factory.mktemp("loop")
    # a prompt of our own, version 2: sigma-tiny after 30 steps writes little of any length, so the
    # answer ends at a line break and only has to be there; the filters of round 2 judge it
    template = yaml.safe_load((ROOT / "configs" / "prompts" / "explain_log.yaml").read_text())
    template.update(version=2, stop=["\n"], check={"format": "prose", "min_chars": 1, "max_copy": None})
    (base / "prompts").mkdir()
    (base / "prompts" / "explain_log.yaml").write_text(yaml.safe_dump(template))
    rounds = [_docs(loghub, ["OpenSSH", "HDFS", "Zookeeper"], 12), _docs(loghub, ["Apache", "Linux"], 10)]
    rounds[1] += rounds[0][:4]  # seen in round 1: dropped as duplicates of the corpus
    sources = []
    for k, docs in enumerate(rounds, 1):
        (base / f"round{k}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        sources.append([{"type": "jsonl", "name": f"logs-{k}", "paths": [str(base / f"round{k}.jsonl")]}])
    loop = {
        "name": "test", "rounds": 2, "sources": sources,
        "curate": {"stages": ["redact", {"basic_filter": {"min_chars": 40}}, "gopher_quality", "gopher_repetition",
                              {"decontaminate": {"suite": str(small_suite)}}, "exact_dedupe"],
                   "writer": {"row_group_rows": 8}},
        "tokenizer": {"vocab_size": 512},
        "train": {"config": str(ROOT / "configs/train/sigma-tiny.yaml"), "steps": 30,
                  "overrides": {"seq_len": 128, "batch_size": 4, "warmup_steps": 5, "eval_every": 30, "save_every": 10,
                                "log_every": 10, "eval_sequences": 8, "held_out_fraction": 0.1}},
        "eval": {"suite": {"definition": str(small_suite), "limit": 8},
                 "perplexity": {"max_documents": 4, "max_chars": 600},
                 "nl2cmd": {"data": str(nl2bash), "shots": 1, "limit": 4, "max_new_tokens": 16}},
        "synth": {"tasks": ["explain_log"], "per_task": 6, "unit_requests": 2, "max_new_tokens": 40,
                  "temperature": 0.8, "batch_size": 2, "prompt_dir": str(base / "prompts")},
        "ray": {"num_cpus": 2},
    }
    path = base / "loop.yaml"
    path.write_text(yaml.safe_dump(loop))
    return path


@pytest.fixture(scope="module")
def whole(config, tmp_path_factory, ray_local) -> Path:
    """The loop run in one go, in-process."""
    out = tmp_path_factory.mktemp("whole") / "loop"
    Flywheel(parse_flywheel(yaml.safe_load(config.read_text())), out, progress=False).run()
    return out


@pytest.mark.slow
def test_rounds_and_their_folders(whole):
    rows = json.loads((whole / "rounds.json").read_text())
    assert [r["round"] for r in rows] == [1, 2]
    for k in (1, 2):
        state = json.loads((whole / f"round-{k}" / "manifest.json").read_text())
        assert list(state["steps"]) == ["curate", "tokenize", "train", "eval", "synth", "report"]
        assert (whole / f"round-{k}" / "report.md").exists() and (whole / f"round-{k}" / "eval.json").exists()
        assert state["steps"]["curate"]["totals"]["balanced"] and state["steps"]["synth"]["totals"]["balanced"]
        train = state["steps"]["train"]
        assert train["steps"] == 30 and train["tokens"] == 30 * 4 * 128 and train["loss"] > 0
    r1, r2 = rows
    assert r1["input"] == 36 and r1["synthetic_in"] == 0 and r1["synth_requests"] == 6
    # round 2: its new logs, the 4 seen in round 1 (dropped against the corpus), round 1's synthetic rows
    assert r2["input"] == 20 + 4 + r1["synth_generated"]
    state2 = json.loads((whole / "round-2" / "manifest.json").read_text())
    drops = pq.read_table(whole / "round-2" / "curate" / "ledger").to_pylist()
    seen = {d["id"]: d["detail"] for d in drops if d["reason"] == "exact_duplicate" and d["source"] == "logs"}
    assert {"OpenSSH-0", "OpenSSH-1", "OpenSSH-2", "OpenSSH-3"} <= set(seen) and seen["OpenSSH-0"] == "OpenSSH-0"
    assert state2["steps"]["train"]["init_from"].endswith("round-1/train")
    assert state2["steps"]["train"]["data"] == [str(whole / "round-1" / "curate"), str(whole / "round-2" / "curate")]
    metrics = [json.loads(x) for x in (whole / "round-2" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert "eval_loss/round-1/curate" in metrics[-1] and "eval_loss/round-2/curate" in metrics[-1]
    assert r1["ppl"] > 1 and r1["nl2cmd_em"] is not None
    # both rounds on the same frozen suite: bits per byte per kind and multiple choice
    assert r1["suite_hash"] == r2["suite_hash"] is not None
    for r in rows:
        assert r["suite_bpb"] > 0 and 0 <= r["mc_accuracy"] <= 1 and r["mc_ci95"]
        assert {k for k in r if k.startswith("suite_bpb_")} == {f"suite_bpb_{k}" for k in ("config", "loghub", "man", "nl2bash")}
    assert "suite bits/byte" in (whole / "rounds.md").read_text()


def test_synthetic_rows_meet_the_same_filters(whole):
    """Round 1's synthetic rows come into round 2's curate with its new sources; each ends kept
    (with its provenance in meta) or dropped by a named stage with a reason, counted per task."""
    r1, r2 = json.loads((whole / "rounds.json").read_text())
    fate = json.loads((whole / "round-2" / "manifest.json").read_text())["steps"]["curate"]["synthetic"]
    assert fate["in"] == r2["synthetic_in"] == r1["synth_generated"] > 0
    assert fate["kept"] + sum(fate["dropped"].values()) == fate["in"]
    assert set(fate["by_task"]) == {"explain_log"}
    shards = pq.read_table(whole / "round-2" / "curate" / "shards").to_pylist()
    synthetic = [r for r in shards if r["source"] == "synthetic"]
    assert len(synthetic) == fate["kept"]
    for row in synthetic:
        meta = json.loads(row["meta"])
        assert meta["round"] == 1 and meta["task"] == "explain_log" and meta["engine"] == "sigma"
        assert meta["prompt_version"] == 2 and meta["sampling"]["stop"] == ["\n"]
        assert meta["parent_id"].split("-")[0] in ("OpenSSH", "HDFS", "Zookeeper")
    ledger = pq.read_table(whole / "round-2" / "curate" / "ledger").to_pylist()
    dropped = [d for d in ledger if d["source"] == "synthetic"]
    assert sorted(f"{d['stage']}:{d['reason']}" for d in dropped) == sorted(
        reason for reason, n in fate["dropped"].items() for _ in range(n))
    synth1 = json.loads((whole / "round-1" / "synth" / "manifest.json").read_text())
    counts = next(s for s in synth1["stages"] if s["name"] == "synthesize")["counts"]
    assert counts["requests:explain_log"] == 6 and counts.get("kept:explain_log", 0) == r1["synth_generated"]


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "jobs.flywheel", str(config), "--output", str(out), "--quiet"],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the loop driver, and what it started (its embedded Ray), once `ready()` holds."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the loop ended before the step to kill it at: {proc.stderr.read()[-2000:]!r}"
        assert time.time() < deadline, "the loop never reached the step to kill it at"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_loop_resumes_to_the_same_table(whole, config, tmp_path):
    out = tmp_path / "loop"
    _kill_when(_start(config, out), lambda: (out / "round-1" / "synth" / "_work" / "plan.json").exists())
    state = json.loads((out / "round-1" / "manifest.json").read_text())
    assert "eval" in state["steps"] and "synth" not in state["steps"]
    checkpoints = out / "round-2" / "train" / "checkpoints"
    _kill_when(_start(config, out), lambda: (checkpoints / "latest").exists())
    assert "train" not in json.loads((out / "round-2" / "manifest.json").read_text())["steps"]
    proc = _start(config, out)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    assert json.loads((out / "rounds.json").read_text()) == json.loads((whole / "rounds.json").read_text())
    for k in (1, 2):
        for kind in ("files", "ledger"):
            assert _rows(whole / f"round-{k}" / "synth", kind) == _rows(out / f"round-{k}" / "synth", kind)


def _rows(root: Path, kind: str) -> list[tuple]:
    """(id, text or reason) of every file a run's manifest lists under `files` or `ledger`."""
    manifest = json.loads((root / "manifest.json").read_text())
    column = "text" if kind == "files" else "reason"
    rows = [r for f in manifest[kind] for r in pq.read_table(root / f["path"], columns=["id", column]).to_pylist()]
    return sorted((r["id"], r[column]) for r in rows)


def test_loop_configuration_errors(config, tmp_path):
    data = yaml.safe_load(config.read_text())
    with pytest.raises(ConfigError, match="synth.tempreature"):
        parse_flywheel({**data, "synth": {**data["synth"], "tempreature": 1.0}})
    a = parse_flywheel(data)
    assert parse_flywheel({**data, "rounds": 5}).output_hash() == a.output_hash()
    assert parse_flywheel({**data, "synth": {**data["synth"], "per_task": 7}}).output_hash() != a.output_hash()
    out = tmp_path / "loop"
    loop = Flywheel(a, out)
    loop._prepare(overwrite=False)
    with pytest.raises(ConfigError, match="another configuration"):
        Flywheel(parse_flywheel({**data, "synth": {**data["synth"], "per_task": 7}}), out)._prepare(overwrite=False)


def test_the_model_overrides_hold_without_init_from(tmp_path):
    """A loop config's `train.overrides.model` (configs/loop/system.yaml's 1.5M-parameter model)
    is the model trained when no `train.init_from` names another."""
    from jobs.flywheel_config import load_flywheel

    model = Flywheel(load_flywheel(ROOT / "configs" / "loop" / "system.yaml"), tmp_path).train_config().model_config()
    assert (model.vocab_size, model.n_layers, model.n_k_heads, model.n_v_heads) == (2048, 4, 2, 4)


@pytest.mark.slow
def test_loop_starts_from_a_checkpoint_with_its_model_and_tokenizer(whole, config, tmp_path):
    """`train.init_from`: round 1 trains that checkpoint's model (here one layer, not the train
    file's sigma-tiny) from its weights (at learning rate 0 they come out unchanged), with its
    tokenizer (vocab 300, not the 512 the loop would train)."""
    import torch

    from sigma.checkpoint import read_checkpoint
    from sigma.train import TrainConfig, train
    from safetensors.torch import load_file

    start = tmp_path / "start"
    train(TrainConfig(model={"preset": "sigma-tiny", "n_layers": 1, "vocab_size": 300}, seq_len=64, batch_size=2,
                      max_steps=2, warmup_steps=1, eval_every=100, save_every=2, held_out_fraction=0.0),
          [whole / "round-1" / "curate"], start, progress=False)
    data = yaml.safe_load(config.read_text())
    data.update(rounds=1, tokenizer={"vocab_size": 512},
                train={**data["train"], "steps": 2, "init_from": str(start), "overrides": {
                    **data["train"]["overrides"], "lr": 0.0, "warmup_steps": 1, "save_every": 2, "eval_every": 2}},
                eval={"perplexity": {"max_documents": 2, "max_chars": 300}},
                synth={**data["synth"], "per_task": 1, "max_new_tokens": 4})
    out = tmp_path / "loop"
    Flywheel(parse_flywheel(data), out, progress=False).run()
    state = json.loads((out / "round-1" / "manifest.json").read_text())
    assert state["steps"]["train"]["init_from"] == str(start)
    assert not (out / "tokenizer.json").exists()
    assert state["steps"]["tokenize"]["tokenizer"] == str(read_checkpoint(start).path / "tokenizer.json")
    first, trained = read_checkpoint(start), read_checkpoint(out / "round-1" / "train")
    assert trained.step == 2 and trained.state["model_config"] == first.state["model_config"]
    assert (trained.path / "tokenizer.json").read_text() == (first.path / "tokenizer.json").read_text()
    before, after = load_file(first.path / "model.safetensors"), load_file(trained.path / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ConfigError, match="tokenizer.path and train.init_from"):
        parse_flywheel({**data, "tokenizer": {"path": str(start / "tokenizer.json")}})


def test_the_loop_report_plots_scores_by_round(whole, tmp_path):
    from jobs.sigma_command import main
    from jobs.flywheel_report import flywheel_rounds

    newest, rounds = flywheel_rounds(whole)
    assert newest == whole / "round-2" / "curate"
    assert [r["round"] for r in rounds] == [1, 2] and all("loss" in r and "ppl" in r for r in rounds)
    assert main(["stats", str(whole), "--html", str(tmp_path / "stats.html")]) == 0
    for html in (whole / "report.html", tmp_path / "stats.html"):  # the loop writes one at its end
        text = html.read_text()
        assert 'data-plot="rounds"' in text and "Scores by round" in text
