"""`sigma refilter`: new thresholds over stored scores, no model and no recomputation needed, on
the curation runner (real local Ray, real Parquet, real man pages and logs)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.sigma_command import main
from jobs.curate import curate
from jobs.refilter import parse_sets, refilter
from pipeline.config import ConfigError, parse_job
from pipeline.manifest import read_manifest
from stages.quality.classifier import Seed, TrainParams, train

ROOT = Path(__file__).resolve().parents[2]
PROSE = Path(__file__).resolve().parents[1] / "data" / "prose_negatives.txt"


def test_parse_sets():
    assert parse_sets(["gopher_quality.min_words=100", "language_filter.languages=[en, de]",
                       "c4_filter.min_sentences=null"]) == {
        "gopher_quality": {"min_words": 100}, "language_filter": {"languages": ["en", "de"]},
        "c4_filter": {"min_sentences": None}}
    with pytest.raises(ConfigError):
        parse_sets(["min_words=3"])


@pytest.mark.slow
def test_refilter_uses_stored_scores_only(ray_local, tmp_path, loghub):
    entries = [e for e in PROSE.read_text().split("\n\n") if e.strip() and not e.startswith("#")]
    prose = [Seed("\n\n".join(entries[i:i + 5]), f"prose#{i}") for i in range(0, len(entries), 5)]
    logs = [Seed(p.read_text(), p.name) for p in sorted(loghub.glob("*/*_2k.log"))]
    train(logs, prose, tmp_path / "model", TrainParams(epoch=5, dim=16, passage_chars=400, holdout=0.2))
    rows = [{"id": f"log{i}", "text": s.text[:3000], "kind": "doc"} for i, s in enumerate(logs)]
    rows += [{"id": f"prose{i}", "text": s.text, "kind": "doc"} for i, s in enumerate(prose[:10])]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)]}], "writer": {"rejects": "all"}, "stages": [
        {"gopher_quality": {"min_words": None, "min_stop_words": None, "min_alpha_words_ratio": None,
                            "max_mean_word_length": None, "max_symbol_word_ratio": None, "max_words": None,
                            "min_mean_word_length": None, "max_bullet_lines_ratio": None,
                            "max_ellipsis_lines_ratio": None}},
        {"domain_classifier": {"model": str(tmp_path / "model"), "min_score": None}},
        {"composite_score": {"weights": {"domain.score": 1}}}]})
    first = curate(job, str(tmp_path / "run"))
    assert first["totals"]["kept"] == len(rows)  # thresholds off: every row kept, with its scores
    shutil.rmtree(tmp_path / "model")  # no model: a recomputed score would fail
    with pytest.raises(ConfigError, match="max_chars"):  # an option of the signal, not of the decision
        refilter(tmp_path / "run", tmp_path / "chars", parse_sets(["domain_classifier.max_chars=100"]))

    manifest = refilter(tmp_path / "run", tmp_path / "strict", parse_sets(["domain_classifier.min_score=0.5"]))
    assert manifest["totals"]["balanced"] and manifest["derived_from"]["scores_recomputed"] is False
    kept = pq.read_table(tmp_path / "strict" / "shards")
    original = pq.read_table(tmp_path / "run" / "shards").to_pandas().set_index("id")
    expected = sorted(original.index[original["domain.score"] >= 0.5])
    assert sorted(kept["id"].to_pylist()) == expected and len(expected) >= 10
    assert all(i.startswith("log") for i in expected)
    assert (kept.to_pandas().set_index("id")["domain.score"] == original.loc[kept["id"].to_pylist(), "domain.score"]).all()
    ledger = pq.read_table(tmp_path / "strict" / "ledger").to_pylist()
    assert {r["reason"] for r in ledger} == {"not_system_domain"} and len(ledger) == len(rows) - len(expected)

    # a signal that reads only stored columns is recomputed: new weights, a new composite score
    weights = {"domain.score": 1, "quality.gopher.alpha_words": 1}
    mixed = refilter(tmp_path / "run", tmp_path / "mixed", {"composite_score": {"weights": weights, "min_score": 0.7}})
    composite = (original["domain.score"] + original["quality.gopher.alpha_words"]) / 2
    kept = pq.read_table(tmp_path / "mixed" / "shards").to_pandas().set_index("id")
    assert sorted(kept.index) == sorted(original.index[composite >= 0.7]) and 0 < len(kept) < len(rows)
    assert (abs(kept["score.composite"] - composite[kept.index]) < 1e-6).all()
    assert mixed["totals"]["dropped_by_reason"] == {"low_composite_score": len(rows) - len(kept)}

    code = main(["refilter", str(tmp_path / "run"), "--set", "gopher_quality.min_words=400",
                 "--output", str(tmp_path / "words")])
    assert code == 0
    words = json.loads((tmp_path / "words" / "manifest.json").read_text())
    n_short = sum(1 for w in original["quality.gopher.words"] if w < 400)
    assert words["totals"]["dropped_by_reason"] == {"gopher_short_doc": n_short} and n_short > 0
    assert main(["stats", str(tmp_path / "words")]) == 0 and main(["verify", str(tmp_path / "words")]) == 0


def _shards(root: Path) -> list[dict]:
    """The output's rows in the order its manifest lists its shards."""
    files = json.loads((root / "manifest.json").read_text())["files"]
    return [row for f in files for row in pq.read_table(root / f["path"]).to_pylist()]


def _ledger(root: Path) -> dict[str, tuple]:
    if not (root / "ledger").exists():
        return {}
    return {r["id"]: (r["stage"], r["reason"], r["detail"]) for r in pq.read_table(root / "ledger").to_pylist()}


@pytest.mark.slow
def test_refilter_equals_a_fresh_curation_with_the_same_thresholds(ray_local, tmp_path, man_root):
    pages = ["ls", "cp", "mv", "rm", "cat", "true", "yes", "sort", "head", "tail", "wc", "tee"]

    def job(min_chars: int, min_words: int):
        return parse_job({"name": "man", "writer": {"rejects": "all"}, "inputs": [
            {"type": "man", "roots": [str(man_root.parent)], "include": pages, "sections": ["1"], "unit_pages": 3}],
            "stages": ["exact_dedupe", {"basic_filter": {"min_chars": min_chars}},
                       {"gopher_quality": {"min_words": min_words}}]})

    parent = curate(job(20, 50), str(tmp_path / "parent"))
    fresh = curate(job(4000, 600), str(tmp_path / "fresh"))
    code = main(["refilter", str(tmp_path / "parent"), "--set", "basic_filter.min_chars=4000",
                 "gopher_quality.min_words=600", "--output", str(tmp_path / "refiltered"), "--quiet"])
    assert code == 0
    out = read_manifest(tmp_path / "refiltered")
    assert out["units"] == len(parent["files"]) > 1

    # the same rows, columns and values in the same order (shard file names follow the units of
    # each run: a parent unit that kept nothing has no shard, so later numbers shift)
    rows = _shards(tmp_path / "refiltered")
    assert rows == _shards(tmp_path / "fresh") and 0 < len(rows) < parent["totals"]["kept"]
    assert out["schema"] == fresh["schema"]
    # the ledger holds what the new thresholds drop, as the fresh curation records it; what the
    # parent dropped already is in the parent's ledger
    fresh_ledger, parent_ledger = _ledger(tmp_path / "fresh"), _ledger(tmp_path / "parent")
    assert _ledger(tmp_path / "refiltered") == {i: v for i, v in fresh_ledger.items() if i not in parent_ledger}
    assert {"too_short", "gopher_short_doc"} <= set(out["totals"]["dropped_by_reason"])
    # the same manifest as a curation: balanced against the parent's kept rows, every declaration
    # (dedupe's reasons too) and the thresholds in force, plus the parent and the overrides
    assert out["totals"]["balanced"] and out["totals"]["input"] == parent["totals"]["kept"]
    assert out["totals"]["kept"] == fresh["totals"]["kept"]
    assert out["thresholds"] == fresh["thresholds"] and out["declared"] == fresh["declared"]
    assert [s["name"] for s in out["stages"]] == ["ingest", "basic_filter", "gopher_quality"]
    assert out["derived_from"] == {
        "output": str(tmp_path / "parent"), "name": "man", "config_hash": parent["config_hash"],
        "overrides": {"basic_filter": {"min_chars": 4000}, "gopher_quality": {"min_words": 600}},
        "decided_by": ["basic_filter", "gopher_quality"], "scores_recomputed": False}
    assert out["config"]["writer"]["rejects_rate"] == fresh["config"]["writer"]["rejects_rate"] == 0.1
    assert main(["verify", str(tmp_path / "refiltered")]) == 0
    # run again: complete already; a refilter of the refilter with the same thresholds drops nothing
    again = refilter(tmp_path / "parent", tmp_path / "refiltered", parse_sets(
        ["basic_filter.min_chars=4000", "gopher_quality.min_words=600"]))
    assert again["resumed"] == "already complete"
    twice = refilter(tmp_path / "refiltered", tmp_path / "twice", {})
    assert twice["totals"]["dropped"] == 0 and _shards(tmp_path / "twice") == rows


@pytest.mark.slow
def test_a_killed_refilter_run_again_gives_the_same_output(ray_local, tmp_path, loghub):
    lines = (loghub / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines()
    rows, at = [], 0
    for i in range(160):  # documents of 1 to 9 log lines
        rows.append({"id": f"ssh-{i}", "text": "\n".join(lines[at:at + i % 9 + 1]), "kind": "log"})
        at += i % 9 + 1
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parent = curate(parse_job({"name": "logs", "writer": {"shard_max_rows": 4},  # 40 shards: 40 units
                               "inputs": [{"type": "jsonl", "paths": [str(corpus)]}], "stages": ["basic_filter"]}),
                    str(tmp_path / "parent"))
    assert len(parent["files"]) == 40

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jobs.sigma_command", "refilter", str(tmp_path / "parent"), "--set", "basic_filter.min_chars=500",
           "--num-cpus", "1", "--quiet", "--output"]
    subprocess.run(cmd + [str(tmp_path / "clean")], check=True, env=env, cwd=ROOT, timeout=300,
                   stdout=subprocess.DEVNULL)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + [str(killed)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    reports = killed / "_work" / "s0"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(reports.glob("u*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the refilter ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    done_before = len(list(reports.glob("u*.json")))
    assert 2 <= done_before < 40
    subprocess.run(cmd + [str(killed)], check=True, env=env, cwd=ROOT, timeout=300, stdout=subprocess.DEVNULL)

    a, b = read_manifest(tmp_path / "clean"), read_manifest(killed)
    for kind in ("files", "ledger", "rejects"):
        assert [(f["path"], f["sha256"]) for f in a[kind]] == [(f["path"], f["sha256"]) for f in b[kind]]
    assert b["totals"] == a["totals"] and b["totals"]["balanced"] and b["totals"]["input"] == parent["totals"]["kept"]
    assert 0 < b["totals"]["dropped_by_reason"]["too_short"] < b["totals"]["input"]
