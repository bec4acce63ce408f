import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from stages.ingest.jsonl import JsonlSource
from stages.ingest.parquet import ParquetSource


def _rows(nl2bash, n=3000):
    rows = []
    with open(nl2bash) as f:
        for i, line in zip(range(n), f):
            pair = json.loads(line)
            rows.append({"id": f"nl-{i}", "text": f"{pair['nl']}\n$ {pair['cmd']}", "kind": "qa", "split": "dev"})
    return rows


def test_byte_ranges_give_the_same_documents_as_one_unit(tmp_path, nl2bash):
    rows = _rows(nl2bash)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole = JsonlSource("j", [str(path)])
    split = JsonlSource("j", [str(path)], unit_mb=0.01)
    assert len(whole.plan()) == 1 and len(split.plan()) > 10
    a, _ = whole.read_all()
    b, _ = split.read_all()
    assert a == b and [d["id"] for d in a] == [r["id"] for r in rows]
    assert a[0]["kind"] == "qa" and json.loads(a[0]["meta"]) == {"split": "dev"}


def test_bad_lines_are_ledger_entries(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "no id here, so one is made from the place"}\n'
                     b"\n"
                     b"[1, 2]\n"
                     b'{"id": 7, "text": 3}\n'
                     b'{"id": "bad", "text": "caf\xe9"}\n'
                     b"{broken\n")
    docs, dropped = JsonlSource("j", [str(path)]).read_all()
    assert len(docs) == 1 and len(docs[0]["id"]) == 24
    assert [d["reason"] for d in dropped] == ["unreadable:not_an_object", "unreadable:text_not_string",
                                              "unreadable:invalid_utf8", "unreadable:invalid_json"]
    again, _ = JsonlSource("j", [str(path)]).read_all()
    assert again[0]["id"] == docs[0]["id"]


def test_gzip_and_truncated_gzip(tmp_path):
    good = tmp_path / "a.jsonl.gz"
    with gzip.open(good, "wt") as f:
        for i in range(100):
            f.write(json.dumps({"id": str(i), "text": f"document {i}"}) + "\n")
    data = good.read_bytes()
    (tmp_path / "b.jsonl.gz").write_bytes(data[: len(data) // 2])
    docs, dropped = JsonlSource("j", [str(tmp_path)]).read_all()
    assert len([d for d in docs if d["uri"].startswith(str(good))]) == 100
    assert [d["reason"] for d in dropped] == ["unreadable:truncated_gzip"]


def test_parquet_rows_by_row_group(tmp_path, nl2bash):
    rows = _rows(nl2bash, 2000)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet", row_group_size=100)
    source = ParquetSource("p", [str(tmp_path / "pairs.parquet")], unit_mb=0.01)
    assert len(source.plan()) > 1
    docs, dropped = source.read_all()
    assert [d["id"] for d in docs] == [r["id"] for r in rows] and not dropped
    # a second set with the same ids (the same requests answered another way) kept apart by a prefix
    prefixed, _ = ParquetSource("q", [str(tmp_path / "pairs.parquet")], id_prefix="again:").read_all()
    assert [d["id"] for d in prefixed] == [f"again:{r['id']}" for r in rows]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    docs, dropped = ParquetSource("p", [str(tmp_path / "broken.parquet")]).read_all()
    assert docs == [] and dropped[0]["reason"] == "unreadable:corrupt_parquet"


def test_curate_shards_read_back_keep_their_meta(tmp_path):
    """A curate output's shards hold meta as a JSON string; reading them as a corpus keeps it, and
    columns that stages added join it."""
    rows = [{"id": "a", "text": "first document", "source": "man", "uri": "man://ls.1", "kind": "doc",
             "meta": json.dumps({"section": "1", "name": "ls"}), "parent_id": "p1"},
            {"id": "b", "text": "second document", "meta": "not json"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-00000-000.parquet")
    docs, dropped = ParquetSource("p", [str(tmp_path)]).read_all()
    assert not dropped
    assert json.loads(docs[0]["meta"]) == {"section": "1", "name": "ls", "parent_id": "p1"}
    assert docs[0]["source"] == "man" and docs[0]["kind"] == "doc"
    assert json.loads(docs[1]["meta"]) == {"meta": "not json", "parent_id": None}
