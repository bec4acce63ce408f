"""What stages declare reaches the manifest, statistics and report with no edit in pipeline/, and a
broken stage fails the run (or the plan) loudly, naming the stage."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from ray import cloudpickle

from jobs.curate import stage_failure
from pipeline.config import parse_job
from pipeline.report import render_html
from pipeline.runner import Job, Runner
from pipeline.stage import Filter, Result, Rule, Stage
from pipeline.stats import compute_stats
from stages.registry import build_source

ROOT = Path(__file__).resolve().parents[2]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers get the test's stages by value


class VowelFilter(Filter):
    """A filter written the documented way: a signal column and a rule. It raises for a document
    that says "boom", as a stage may for one bad document."""

    name = "vowel_filter"
    rules = (Rule("few_vowels", "test.vowels", "min", "min_vowels"),)

    def __init__(self, min_vowels: float | None = 0.25):
        self.min_vowels = min_vowels

    def columns(self):
        return {"test.vowels": pa.float32()}

    def signal(self, batch):
        texts = batch["text"].to_pylist()
        if any("boom" in t for t in texts):
            raise ValueError("boom is not a word")
        share = [sum(c in "aeiou" for c in t.lower()) / max(len(t), 1) for t in texts]
        return batch.append_column(pa.field("test.vowels", pa.float32()), pa.array(share, pa.float32()))


class Broken(Stage):
    name = "broken"

    def process(self, batch) -> Result:
        raise KeyError("option `field` names no column")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    rows = [{"id": f"a{i}", "text": f"a quiet audio idea {i} about our aim"} for i in range(12)]
    rows += [{"id": f"c{i}", "text": f"crwth psst nth {i} rhythm myths"} for i in range(8)]
    rows.append({"id": "boom", "text": "boom goes the audio"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _job(corpus: Path, out: Path, stage) -> Job:
    """One source and one stage: a single map segment, no shuffle."""
    config = parse_job({"name": "declared", "inputs": [{"type": "jsonl", "paths": [str(corpus)]}]})
    return Job(config, [build_source(config.inputs[0], 0)], [stage], out)


def test_a_new_filter_reaches_manifest_stats_and_report(ray_local, corpus, tmp_path):
    out = tmp_path / "out"
    manifest = Runner(_job(corpus, out, VowelFilter())).run()
    assert {"stage": "vowel_filter", "column": "test.vowels", "op": "min", "value": 0.25,
            "reason": "few_vowels"} in manifest["thresholds"]
    assert {"stage": "vowel_filter", "reason": "few_vowels", "duplicate": False} in manifest["declared"]["reasons"]
    totals = manifest["totals"]
    assert totals["balanced"] and totals["dropped_by_reason"] == {"few_vowels": 8, "stage_error:ValueError": 1}
    stats = compute_stats(out)
    vowels = stats["scores"]["test.vowels"]
    assert sum(vowels["counts"]) == 12 and vowels["thresholds"][0]["value"] == 0.25
    assert 'data-plot="score-test.vowels"' in render_html(stats)


def test_a_stage_that_fails_for_most_documents_fails_the_run(ray_local, corpus, tmp_path):
    with pytest.raises(Exception) as caught:
        Runner(_job(corpus, tmp_path / "out", Broken())).run()
    message = stage_failure(caught.value)
    assert message and "stage broken raised for 21 of 21 documents" in message
    assert "KeyError" in message and "names no column" in message  # the first error, shown


def test_a_misconfigured_stage_is_an_error_before_any_work(corpus, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "bad", "inputs": [{"type": "jsonl", "paths": [str(corpus)]}],
                               "stages": [{"composite_score": {"weights": {"domain.score": 1.0}, "min_score": 0.5}}]}))
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "curate", str(job), "--output", str(out), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "composite_score" in run.stderr and "domain.score" in run.stderr
    assert not out.exists()  # nothing planned, nothing read
