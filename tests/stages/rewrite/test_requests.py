"""Synthesis requests: which parents each task takes, a deterministic sample, and request rows
that already are the children they ask for."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.schema import doc_id
from stages.rewrite.requests import SynthRequests
from stages.rewrite.templates import load_template

CONFIG = "\n".join(f"Option{i} value{i}" for i in range(30))


@pytest.fixture
def corpus(tmp_path, loghub):
    lines = (loghub / "Zookeeper" / "Zookeeper_2k.log").read_text().splitlines()
    rows = [{"id": f"log{i}", "text": "\n".join(lines[i * 12:(i + 1) * 12]), "source": "logs", "uri": f"zk#{i}",
             "kind": "log", "meta": "{}"} for i in range(10)]
    rows += [{"id": f"conf{i}", "text": CONFIG + f"\n# file {i}", "source": "file", "uri": f"/etc/c{i}.conf",
              "kind": "config", "meta": "{}"} for i in range(3)]
    rows += [{"id": "tiny", "text": "x = 1", "source": "file", "uri": "/etc/tiny.conf", "kind": "config", "meta": "{}"},
             {"id": "syn", "text": "\n".join(lines[:12]), "source": "synthetic", "uri": "synthetic://x", "kind": "log",
              "meta": "{}"}]
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "shards" / "part-00000-000.parquet", row_group_size=4)
    return tmp_path


def _read(source):
    rows = []
    for payload in source.plan():
        for result in source.read(payload):
            rows += result.kept.to_pylist()
            assert result.dropped is None or result.dropped.num_rows == 0
    return rows


def test_each_task_takes_its_own_parents(corpus):
    rows = _read(SynthRequests("r", [str(corpus)], ["explain_log", "annotate_config", "man_qa"], round=3,
                               per_task=None, unit_requests=4))
    parents = {(json.loads(r["meta"])["task"], json.loads(r["meta"])["parent_id"]) for r in rows}
    assert parents == {("explain_log", f"log{i}") for i in range(10)} | {("annotate_config", f"conf{i}") for i in range(3)}
    for r in rows:
        meta = json.loads(r["meta"])
        version = load_template(meta["task"]).version  # the template's prompt version names its rows
        assert r["uri"] == f"synthetic://{meta['task']}/v{version}/round-3/{meta['parent_id']}"
        assert r["id"] == doc_id("synthetic", r["uri"]) and r["source"] == "synthetic"
        assert r["kind"] == {"explain_log": "qa", "annotate_config": "config"}[meta["task"]]
        assert meta["round"] == 3 and meta["prompt_version"] == version and meta["parent_kind"] in ("log", "config")
    log_row = next(r for r in rows if json.loads(r["meta"])["parent_id"] == "log0")
    assert log_row["text"].startswith("2015-07-29")  # the parent's text, until synthesis replaces it


def test_the_sample_is_seeded_and_stable(corpus):
    def chosen(seed):
        rows = _read(SynthRequests("r", [str(corpus)], ["explain_log"], per_task=4, seed=seed))
        return [json.loads(r["meta"])["parent_id"] for r in rows]

    first = chosen(0)
    assert len(first) == 4 and first == chosen(0)
    assert {tuple(chosen(s)) for s in range(5)} != {tuple(first)}
    plan = SynthRequests("r", [str(corpus)], ["explain_log"], per_task=4, unit_requests=3).plan()
    assert [len(u) for u in plan] == [3, 1]


def test_unknown_task_is_an_error(corpus):
    with pytest.raises(ValueError, match="no prompt template for task 'haiku'"):
        SynthRequests("r", [str(corpus)], ["haiku"])
