import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest import output_shard_files, scrub_secrets


def test_secrets_in_the_job_config_do_not_reach_the_manifest():
    config = {"inputs": [{"type": "http", "url": "https://bob:hunter2@example.org/x", "api_key": "sk-123",
                          "headers": {"Authorization": "Bearer abc"}, "paths": ["/data/token-list.txt"]}],
              "writer": {"rejects": "all"}}
    clean = scrub_secrets(config)
    text = repr(clean)
    assert "hunter2" not in text and "sk-123" not in text and "Bearer abc" not in text
    assert clean["inputs"][0]["url"] == "https://bob:<redacted>@example.org/x"
    assert clean["inputs"][0]["paths"] == ["/data/token-list.txt"]
    assert clean["writer"] == {"rejects": "all"}


def test_output_shard_files_read_from_the_manifest(tmp_path):
    with pytest.raises(ValueError, match="not a finished curate output"):
        output_shard_files(tmp_path)
    (tmp_path / "shards").mkdir()
    pq.write_table(pa.table({"id": ["a", "b"]}), tmp_path / "shards" / "part-00000-000.parquet")
    pq.write_table(pa.table({"id": pa.array([], pa.string())}), tmp_path / "shards" / "part-00001-000.parquet")
    pq.write_table(pa.table({"id": ["stray"]}), tmp_path / "shards" / "left-over.parquet")  # not in the manifest
    (tmp_path / "manifest.json").write_text(json.dumps({"files": [
        {"path": "shards/part-00000-000.parquet", "rows": 2}, {"path": "shards/part-00001-000.parquet", "rows": 0}]}))
    assert output_shard_files(tmp_path) == [(str(tmp_path / "shards" / "part-00000-000.parquet"), 2)]
    (tmp_path / "shards" / "part-00000-000.parquet").unlink()
    with pytest.raises(ValueError, match="1 shard"):
        output_shard_files(tmp_path)
