"""`sigma refilter`: new thresholds over stored scores, no model and no recomputation needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.sigma_command import main
from jobs.curate import curate
from jobs.refilter import parse_sets, refilter
from pipeline.config import ConfigError, parse_job
from stages.quality.classifier import Seed, TrainParams, train

PROSE = Path(__file__).resolve().parents[1] / "data" / "prose_negatives.txt"


def test_parse_sets():
    assert parse_sets(["gopher_quality.min_words=100", "language_filter.languages=[en, de]",
                       "c4_filter.min_sentences=null"]) == {
        "gopher_quality": {"min_words": 100}, "language_filter": {"languages": ["en", "de"]},
        "c4_filter": {"min_sentences": None}}
    with pytest.raises(ConfigError):
        parse_sets(["min_words=3"])


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
        {"domain_classifier": {"model": str(tmp_path / "model"), "min_score": None}}]})
    first = curate(job, str(tmp_path / "run"))
    assert first["totals"]["kept"] == len(rows)  # thresholds off: every row kept, with its scores
    shutil.rmtree(tmp_path / "model")  # no model: a recomputed score would fail

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

    code = main(["refilter", str(tmp_path / "run"), "--set", "gopher_quality.min_words=400",
                 "--output", str(tmp_path / "words")])
    assert code == 0
    words = json.loads((tmp_path / "words" / "manifest.json").read_text())
    n_short = sum(1 for w in original["quality.gopher.words"] if w < 400)
    assert words["totals"]["dropped_by_reason"] == {"gopher_short_doc": n_short} and n_short > 0
    assert main(["stats", str(tmp_path / "words")]) == 0 and main(["verify", str(tmp_path / "words")]) == 0
