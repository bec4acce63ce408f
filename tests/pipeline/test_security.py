"""Inputs cannot reach outside the output folder or expand without bound."""

import gzip
import json

import pyarrow.parquet as pq
import pytest

from jobs.curate import curate, quick_job
from stages.ingest.files import FilesSource


def test_a_gzip_bomb_is_refused_at_the_size_cap(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    with gzip.open(root / "bomb.log.gz", "wb", compresslevel=9) as f:
        block = b"\0" * (1 << 20)
        for _ in range(256):  # 256 MB of zeros in about 250 KB
            f.write(block)
    (root / "fine.log").write_text("sshd[1]: Accepted publickey for root from 10.0.0.1 port 22\n")
    docs, dropped = FilesSource("f", [str(root)], max_file_mb=1).read_all()
    assert [d["uri"].rsplit("/", 1)[1] for d in docs] == ["fine.log"]
    assert [(d["reason"], d["detail"]) for d in dropped] == [
        ("too_large", f"decompresses to over the cap of {1 << 20} bytes")]


@pytest.mark.slow
def test_ids_and_names_from_inputs_never_become_output_paths(tmp_path, ray_local):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rows = [{"id": "../../escape", "text": "a document whose id climbs out of the output folder " * 3},
            {"id": "/etc/passwd", "text": "a document whose id is an absolute path somewhere else " * 3},
            {"id": "shards/part-00000.parquet", "text": "a document whose id names an output file " * 3}]
    (inputs / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (inputs / "logs").mkdir()
    (inputs / "logs" / "..hidden.log").write_text("kernel: a file whose name starts with two dots, twice over\n" * 3)
    out = tmp_path / "run" / "out"
    manifest = curate(quick_job([str(inputs / "rows.jsonl"), str(inputs / "logs")], str(out)), str(out))
    assert manifest["totals"]["balanced"] and manifest["totals"]["kept"] == 4, manifest["totals"]
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(inputs)]
    assert written and all(p.is_relative_to(out) for p in written)
    assert not (tmp_path / "escape").exists()
    kept = set(pq.read_table(out / "shards").column("id").to_pylist())
    assert {r["id"] for r in rows} <= kept  # kept as data, never used as a name
    assert {p.name for p in (out / "shards").iterdir()} == {f["path"].rsplit("/", 1)[1] for f in manifest["files"]}
