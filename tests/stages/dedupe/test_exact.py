import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.curate import curate
from pipeline.config import ConfigError, parse_job
from stages.dedupe.exact import HASH, ExactDedupe, _keepers, normalise


def test_normalisation():
    text = pa.array(["  Hello\n\tWorld  ", "hello world"])
    assert normalise(text, lowercase=False).to_pylist() == ["Hello World", "hello world"]
    assert normalise(text, lowercase=True).to_pylist() == ["hello world", "hello world"]


def test_keeper_is_the_earliest_in_input_order():
    group = pa.table({"id": ["c", "a", "b", "d"], "_unit": pa.array([2, 0, 1, 0], pa.int32()),
                      "_row": pa.array([0, 5, 0, 1], pa.int64()), HASH: ["h", "h", "h", "k"]})
    drops = _keepers(group).to_pylist()
    assert [(d["_unit"], d["_row"], d["detail"]) for d in drops] == [(1, 0, "a"), (2, 0, "a")]
    assert {d["reason"] for d in drops} == {"exact_duplicate"}


@pytest.mark.slow
def test_duplicates_across_many_units(tmp_path, loghub, ray_local):
    """Copies far apart in the input, in different work units, keep the first copy."""
    lines = (loghub / "HDFS" / "HDFS_2k.log").read_text().splitlines()
    docs = [{"id": f"h{i}", "text": "\n".join(lines[i * 10:(i + 1) * 10])} for i in range(150)]
    docs += [{"id": f"copy{i}", "text": docs[i]["text"].upper() if i % 2 else docs[i]["text"]} for i in range(0, 150, 7)]
    path = tmp_path / "hdfs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    job = parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)], "unit_mb": 0.02}],
                     "stages": [{"exact_dedupe": {"lowercase": True, "rows_per_partition": 40}}]})
    manifest = curate(job, str(tmp_path / "out"))
    assert manifest["units"] > 5 and manifest["totals"]["balanced"]
    ledger = pq.read_table(tmp_path / "out" / "ledger").to_pylist()
    assert {r["id"]: r["detail"] for r in ledger} == {f"copy{i}": f"h{i}" for i in range(0, 150, 7)}
    kept = pq.read_table(tmp_path / "out" / "shards").column("id").to_pylist()
    assert sorted(kept) == sorted(f"h{i}" for i in range(150))
    assert HASH in pq.read_schema(next((tmp_path / "out" / "shards").glob("*.parquet"))).names


def test_signal_is_stable():
    stage = ExactDedupe()
    batch = pa.table({"text": ["a  b", "a b", "A b"]})
    hashes = stage.signal(batch)[HASH].to_pylist()
    assert hashes[0] == hashes[1] != hashes[2] and len(hashes[0]) == 32


@pytest.mark.slow
def test_dedupe_against_existing_outputs(tmp_path, loghub, ray_local):
    """A new run deduped against earlier outputs: copies of their documents are dropped naming the
    existing keeper (read from its hash column, or hashed again when it was deduped differently);
    the existing documents are never dropped; duplicates among the new ones keep the first."""
    lines = (loghub / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines()
    chunks = ["\n".join(lines[i * 8:(i + 1) * 8]) for i in range(60)]

    def run(name, docs, stages):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
        manifest = curate(parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)], "unit_mb": 0.004}],
                                     "stages": stages}), str(tmp_path / name))
        assert manifest["totals"]["balanced"]
        return tmp_path / name

    old = run("old", [{"id": f"old{i}", "text": chunks[i]} for i in range(20)], ["exact_dedupe"])
    plain = run("plain", [{"id": f"plain{i}", "text": chunks[i]} for i in range(20, 30)], ["basic_filter"])
    new = [{"id": f"new{i}", "text": chunks[i]} for i in range(10, 40)]  # 10..19 in old, 20..29 in plain
    new += [{"id": "again25", "text": chunks[25] + "\n"}, {"id": "again35", "text": chunks[35]}]
    out = run("new", new, [{"exact_dedupe": {"existing": [str(old), str(plain)], "rows_per_partition": 16}}])
    ledger = {r["id"]: r["detail"] for r in pq.read_table(out / "ledger").to_pylist()}
    expected = {f"new{i}": f"old{i}" for i in range(10, 20)} | {f"new{i}": f"plain{i}" for i in range(20, 30)}
    assert ledger == expected | {"again25": "plain25", "again35": "new35"}
    kept = sorted(pq.read_table(out / "shards").column("id").to_pylist())
    assert kept == sorted(f"new{i}" for i in range(30, 40))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["dropped_by_reason"] == {"exact_duplicate": 22}


def test_existing_that_is_not_an_output_fails_before_any_work(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "some text"}) + "\n")
    for stage in ("exact_dedupe", "near_dedupe"):
        job = parse_job({"inputs": [{"type": "jsonl", "paths": [str(path)]}],
                         "stages": [{stage: {"existing": [str(tmp_path)]}}]})
        with pytest.raises(ConfigError, match=f"stage {stage} .*not a finished curate output"):
            curate(job, str(tmp_path / "out"))
        assert not (tmp_path / "out").exists()
