"""Decontamination against NL2Bash: planted eval items are found in longer documents, dropped
with the item named, or cut out; real man pages that share no long n-gram are kept."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.curate import curate
from pipeline.config import parse_job
from sigma.evals.overlap import tokens
from stages.safety.decontaminate import Decontaminate

FILLER = ("The administrator checked the service status after the upgrade and wrote the result to the "
          "team's log, then went back to reviewing the backup schedule for the next quarter.")


@pytest.fixture
def items(nl2bash):
    rows = [json.loads(line) for line in nl2bash.read_text().splitlines()]
    rng = random.Random(1)
    long_nl = [r for r in rows if len(tokens(r["nl"])) >= 14]
    long_cmd = [r for r in rows if 9 <= len(tokens(r["cmd"])) < 13]
    return rng.sample(long_nl, 5), rng.sample(long_cmd, 5)


def batch(texts) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "kind": ["doc"] * len(texts)})


def test_every_planted_item_is_found_and_named(items, nl2bash):
    nls, cmds = items
    stage = Decontaminate(eval_sets=[str(nl2bash)])
    planted = [f"{FILLER}\n{r['nl']}\n{FILLER}" for r in nls] + [f"Run this:\n    {r['cmd']}\n{FILLER}" for r in cmds]
    # a 13-gram of a long description, inside other words, is enough
    words = nls[0]["nl"].split()
    partial = f"{FILLER} " + " ".join(words[:14]) + f" {FILLER}"
    clean = [FILLER, FILLER.replace("service", "daemon") * 3]
    result = stage.process(batch(planted + [partial] + clean))
    dropped = result.dropped.to_pylist()
    assert [r["id"] for r in dropped] == [f"d{i}" for i in range(11)]
    assert {r["reason"] for r in dropped} == {"decontaminated"}
    for row, item in zip(dropped, nls + cmds):
        assert row["decontam.item"].startswith("dev.jsonl:")
        assert item["nl"][:40] in row["detail"] or item["cmd"][:40] in row["detail"]
    assert result.kept["id"].to_pylist() == ["d11", "d12"]
    assert result.kept["decontam.matches"].to_pylist() == [0, 0]


def test_shorter_overlap_than_the_ngram_is_kept(items, nl2bash):
    nls, _ = items
    words = nls[0]["nl"].split()
    text = f"{FILLER} " + " ".join(words[:6]) + f" {FILLER}"
    assert Decontaminate(eval_sets=[str(nl2bash)], fields=["nl"]).process(batch([text])).dropped is None


def test_redact_action_cuts_the_span(items, nl2bash):
    nls, _ = items
    text = f"{FILLER}\n{nls[1]['nl']}\n{FILLER}"
    kept = Decontaminate(eval_sets=[str(nl2bash)], action="redact").process(batch([text])).kept
    assert kept["text"][0].as_py() == f"{FILLER}\n<EVAL>\n{FILLER}"


@pytest.mark.slow
def test_in_a_job_with_the_ledger(ray_local, items, tmp_path, nl2bash):
    nls, cmds = items
    rows = [{"id": f"p{i}", "text": f"{FILLER}\n{r['nl']}\n{r['cmd']}", "kind": "doc"} for i, r in enumerate(nls)]
    rows += [{"id": f"c{i}", "text": FILLER + f" Item {i}.", "kind": "doc"} for i in range(5)]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)]}],
                     "stages": [{"decontaminate": {"eval_sets": [str(nl2bash)]}}]})
    manifest = curate(job, str(tmp_path / "out"))
    assert manifest["totals"]["dropped_by_reason"] == {"decontaminated": 5}
    ledger = pq.read_table(tmp_path / "out" / "ledger").to_pylist()
    assert sorted(r["id"] for r in ledger) == [f"p{i}" for i in range(5)]
    assert all(r["detail"].startswith("dev.jsonl:") for r in ledger)


def test_suite_documents_and_their_overlaps_are_dropped(small_suite):
    """With `suite`, a held-out man page is dropped by where it came from, a copy of it under
    another name by its n-grams, a suite request inside a text by its n-gram; the reasons name
    the suite; kept rows carry its hash."""
    from sigma.evals.suite import load_suite

    suite = load_suite(small_suite)
    man = next(d for d in suite.documents if d["kind"] == "man")
    item = suite.mc[0]
    texts = [man["text"], "Saved from the web:\n" + man["text"], f"{FILLER}\n{item['nl']}\n{FILLER}", FILLER]
    stage = Decontaminate(suite=str(small_suite))
    result = stage.process(pa.table({"id": ["a", "b", "c", "d"], "text": texts,
                                     "uri": [man["uri"], "jsonl:1", "jsonl:2", "jsonl:3"], "kind": ["doc"] * 4}))
    dropped = {r["id"]: r for r in result.dropped.to_pylist()}
    assert dropped["a"]["reason"] == "suite_held_out" and "test-suite" in dropped["a"]["detail"]
    assert dropped["b"]["reason"] == "suite_overlap" and f"suite test-suite:man:{man['id']}" in dropped["b"]["detail"]
    assert dropped["c"]["reason"] == "decontaminated" and dropped["c"]["detail"].startswith(f"suite test-suite:mc:{item['id']}:nl")
    assert result.kept["id"].to_pylist() == ["d"] and result.kept["decontam.suite"].to_pylist() == [suite.hash]
