"""The order arms read a variant in (jobs/ablate_order.py), on real Loghub logs: pieces give the
documents back, the order is a fixed hash order that does not depend on the other documents, and
the bytes an arm read of each kind are what the training stream really returned."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.ablate_order import bytes_by_kind, pieces, write_order
from sigma.packing import SequenceStream
from sigma.shards import ShardSet, sha256_file
from sigma.tokenizer import end_of_text_id, train_tokenizer


def _curated(root: Path, docs: list[dict]) -> Path:
    """A folder laid out as a curate output: one shard, a manifest naming it and a stage list."""
    (root / "shards").mkdir(parents=True)
    shard = root / "shards" / "part-00000.parquet"
    columns = {k: [d[k] for d in docs] for k in ("id", "text", "kind")}
    columns |= {"source": ["test"] * len(docs), "uri": [d["id"] for d in docs], "meta": ["{}"] * len(docs),
                "decontam.suite": ["abc"] * len(docs)}
    pq.write_table(pa.table(columns), shard, row_group_size=4)
    files = [{"path": "shards/part-00000.parquet", "rows": len(docs), "bytes": shard.stat().st_size,
              "sha256": sha256_file(shard)}]
    stages = [{"name": "decontaminate", "options": {"suite": "suite.yaml"}}]
    (root / "manifest.json").write_text(json.dumps({"config_hash": "h", "config": {"stages": stages}, "files": files}))
    return root


@pytest.fixture(scope="module")
def docs(loghub) -> list[dict]:
    out = []
    for system, kind in (("OpenSSH", "log"), ("Apache", "config"), ("Linux", "doc")):
        lines = (loghub / system / f"{system}_2k.log").read_text().splitlines()
        out += [{"id": f"{system}-{i}", "text": "\n".join(lines[i * 40:(i + 1) * 40]), "kind": kind} for i in range(4)]
    return out


def test_pieces_give_the_text_back_and_end_at_line_ends():
    text = "".join(f"line {i} " + "x" * (i % 50) + "\n" for i in range(200))
    cut = pieces(text, 300)
    assert "".join(cut) == text and len(cut) > 10
    assert all(len(p) <= 300 and p.endswith("\n") for p in cut)
    assert pieces("y" * 700, 300) == ["y" * 300, "y" * 300, "y" * 100]  # no line end: cut at the limit
    assert pieces("", 300) == [""]


def test_the_order_is_a_fixed_hash_order(docs, tmp_path):
    a = write_order(_curated(tmp_path / "a", docs), tmp_path / "a-ordered", 512, 8)
    again = write_order(_curated(tmp_path / "b", docs), tmp_path / "b-ordered", 512, 8)
    fewer = write_order(_curated(tmp_path / "c", docs[::2]), tmp_path / "c-ordered", 512, 8)
    table = pq.read_table(a / "shards" / "part-00000.parquet")
    assert table.equals(pq.read_table(again / "shards" / "part-00000.parquet"))
    ids = table.column("id").to_pylist()
    for d in docs:  # every document is all there, its pieces scattered through the order
        mine = sorted((int(i.rsplit("#", 1)[1]), t) for i, t in zip(ids, table.column("text").to_pylist())
                      if i.rsplit("#", 1)[0] == d["id"])
        assert "".join(t for _, t in mine) == d["text"]
    kinds = table.column("kind").to_pylist()
    assert len({tuple(kinds[k:k + 8]) for k in range(0, len(kinds), 8)}) > 1 and kinds != sorted(kinds)
    kept = set(pq.read_table(fewer / "shards" / "part-00000.parquet").column("id").to_pylist())
    assert [i for i in ids if i in kept] == pq.read_table(fewer / "shards" / "part-00000.parquet").column("id").to_pylist()
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["config"]["stages"][0]["name"] == "decontaminate" and manifest["documents"] == len(docs)
    assert set(table.column("decontam.suite").to_pylist()) == {"abc"}
    ShardSet.open(a)  # the manifest's checksums hold


def test_bytes_by_kind_are_what_the_stream_read(docs, tmp_path):
    ordered = write_order(_curated(tmp_path / "v", docs), tmp_path / "v-ordered", 512, 4)
    tokenizer = train_tokenizer((d["text"] for d in docs), 300)
    stream = SequenceStream(ShardSet.open(ordered), tokenizer, 32, seed=3, lanes=3)
    windows = [next(stream) for _ in range(150)]
    eos = end_of_text_id(tokenizer)
    read = np.concatenate([w[:-1] for w in windows])  # each window's last token starts the next one
    text_bytes = len(tokenizer.decode([int(t) for t in read if t != eos]).encode())
    seen = bytes_by_kind(ordered, tokenizer, stream.state_dict(), seed=3, lanes=3)
    assert set(seen) == {"test:log", "test:config", "test:doc"}
    assert sum(seen.values()) == pytest.approx(text_bytes, abs=3 * 4)  # a partly read token per lane at most
