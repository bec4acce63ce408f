import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import BASE_SCHEMA
from pipeline.shards import ShardWriter, sha256_file


def _docs(n, size=100):
    return pa.Table.from_pylist([{"id": f"d{i}", "text": "x" * size, "source": "t", "uri": f"u{i}", "kind": "doc",
                                  "meta": "{}"} for i in range(n)], schema=BASE_SCHEMA)


def test_shards_are_bounded_by_rows_and_bytes(tmp_path):
    w = ShardWriter(tmp_path, "shards", "part-00000", BASE_SCHEMA, max_rows=30)
    for _ in range(4):
        w.write(_docs(25))
    records = w.close()
    assert [r.rows for r in records] == [30, 30, 30, 10]
    w = ShardWriter(tmp_path, "by_bytes", "p", BASE_SCHEMA, max_bytes=20_000)
    w.write(_docs(1000, size=1000))
    records = w.close()
    assert len(records) > 10 and sum(r.rows for r in records) == 1000
    assert all(pq.ParquetFile(tmp_path / r.path).metadata.num_rows == r.rows for r in records)


def test_shards_are_zstd_with_checksums_and_no_temporary_files(tmp_path):
    w = ShardWriter(tmp_path, "shards", "part-00000", BASE_SCHEMA)
    w.write(_docs(10))
    (record,) = w.close()
    path = tmp_path / record.path
    assert path.name == "part-00000-000.parquet"
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).compression == "ZSTD"
    assert record.sha256 == sha256_file(path) and record.bytes == path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["part-00000-000.parquet"]


def test_abort_leaves_nothing_a_reader_would_see(tmp_path):
    w = ShardWriter(tmp_path, "shards", "part-00000", BASE_SCHEMA)
    w.write(_docs(10))
    w.abort()
    assert [p for p in (tmp_path / "shards").iterdir() if not p.name.startswith(".")] == []
    assert list((tmp_path / "shards").iterdir()) == []
