"""fastText classifiers trained in the test on real seeds: man pages and loghub logs against public
domain prose; held-out metrics, the manifest, the recall loop, and the scoring stage in a job."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.classifier import read_seeds
from jobs.curate import curate
from stages.ingest.man import ManSource
from pipeline.config import parse_job
from stages.quality.classifier import Classifier, Seed, TrainParams, recall_loop, train
from stages.quality.classifier_filter import DomainClassifier
from stages.quality.composite import CompositeScore

PROSE = Path(__file__).resolve().parents[2] / "data" / "prose_negatives.txt"
PARAMS = TrainParams(epoch=8, dim=16, passage_chars=500, max_passages_per_doc=8, holdout=0.25)
PAGES = ["ls", "cp", "mv", "rm", "grep", "find", "tar", "chmod", "chown", "ps", "kill", "mount", "df", "du",
         "ssh", "crontab", "systemctl", "journalctl", "ip", "ln", "sed", "sort", "head", "tail", "gzip"]


def prose_seeds() -> list[Seed]:
    entries = [e for e in PROSE.read_text().split("\n\n") if e.strip() and not e.startswith("#")]
    return [Seed("\n\n".join(entries[i:i + 6]), f"prose#{i}", "prose") for i in range(0, len(entries), 6)]


@pytest.fixture
def seeds(tmp_path_factory, man_root, loghub):
    root = tmp_path_factory.mktemp("seeds")
    man = ManSource("man", roots=[str(man_root.parent)], sections=["1", "8"], include=PAGES)
    positives = [Seed(r["text"], r["uri"], "man") for unit in man.plan() for res in man.read(unit)
                 for r in res.kept.to_pylist()]
    positives += read_seeds([str(loghub)], max_docs=None)
    negatives = prose_seeds()
    assert len(positives) >= 30 and len(negatives) >= 20
    return positives, negatives, root


def test_train_reports_held_out_metrics_and_saves_a_manifest(seeds, tmp_path):
    positives, negatives, _ = seeds
    manifest = train(positives, negatives, tmp_path / "m", PARAMS, name="domain")
    assert (tmp_path / "m" / manifest["model"]["file"]).exists() and manifest["model"]["bytes"] < 30_000_000
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert saved["held_out"] == manifest["held_out"]
    assert saved["held_out"]["positives"] > 10 and saved["held_out"]["negatives"] > 5
    assert saved["held_out"]["precision"] >= 0.9 and saved["held_out"]["recall"] >= 0.9
    assert saved["seeds"]["positive"]["documents"] == len(positives)
    again = train(positives, negatives, tmp_path / "m2", PARAMS, name="domain")
    assert again["model"]["sha256"] == manifest["model"]["sha256"]  # seeded: the same model
    model = Classifier.load(tmp_path / "m")
    system, prose = model.score(["Usage: tar -czf archive.tar.gz DIR\n  -c  create a new archive",
                                 "LOVE, n. A temporary insanity curable by marriage."])
    assert system > 0.5 > prose


def test_recall_loop_records_every_round(seeds, tmp_path):
    positives, negatives, _ = seeds
    base, pool_pos = positives[::2], positives[1::2]
    pool = pool_pos + negatives[::3]
    labels = {s.uri: True for s in pool_pos} | {s.uri: False for s in negatives[::3]}
    manifest = recall_loop(base, negatives, pool, tmp_path / "loop", rounds=2, accept=0.8, params=PARAMS,
                           pool_labels=labels)
    history = manifest["recall_loop"]["history"]
    assert [r["round"] for r in history] == [0, 1, 2]
    assert history[1]["positive_seeds"] == history[0]["positive_seeds"] + history[0]["added"]
    assert history[0]["added"] > 0 and "pool_labelled" in history[0]
    assert (tmp_path / "loop" / manifest["model"]["file"]).exists() and (tmp_path / "loop" / "round-1" / "manifest.json").exists()


@pytest.mark.slow
def test_scores_are_columns_and_the_decision_is_separate(ray_local, seeds, tmp_path):
    positives, negatives, _ = seeds
    train(positives, negatives, tmp_path / "m", PARAMS)
    rows = [{"id": f"p{i}", "text": s.text, "kind": "doc"} for i, s in enumerate(positives[:6])]
    rows += [{"id": f"n{i}", "text": s.text, "kind": "doc"} for i, s in enumerate(negatives[:6])]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)]}], "stages": [
        {"domain_classifier": {"model": str(tmp_path / "m"), "min_score": 0.5}},
        {"composite_score": {"weights": {"domain.score": 1.0}, "min_score": None}}]})
    manifest = curate(job, str(tmp_path / "out"))
    shards = pq.read_table(tmp_path / "out" / "shards")
    assert {"domain.score", "score.composite"} <= set(shards.column_names)
    assert sorted(shards["id"].to_pylist()) == [f"p{i}" for i in range(6)]
    assert manifest["totals"]["dropped_by_reason"] == {"not_system_domain": 6}
    # a new threshold over the stored column, without the model
    stage = DomainClassifier(str(tmp_path / "m"), min_score=1.01)
    assert set(stage.decide(shards)[0]) == {"not_system_domain"}
    assert CompositeScore({"domain.score": 2.0}, min_score=0.0).decide(shards)[0] == [None] * 6
