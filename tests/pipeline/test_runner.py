"""The whole curate job on a real local Ray, real files and real Parquet."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.curate import curate, quick_job
from pipeline.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def _corpus(tmp_path: Path, loghub: Path) -> Path:
    """Real log lines in 20-line documents, with planted exact duplicates and bad lines."""
    lines = (loghub / "OpenSSH" / "OpenSSH_2k.log").read_text().splitlines()
    rows = [{"id": f"ssh-{i}", "text": "\n".join(lines[i * 20:(i + 1) * 20])} for i in range(60)]
    rows.append({"id": "dup-a", "text": rows[3]["text"]})
    rows.append({"id": "dup-b", "text": "  " + rows[3]["text"].replace("\n", "\n   ") + "\n"})
    rows.append({"id": "dup-c", "text": rows[10]["text"]})
    path = tmp_path / "corpus.jsonl"
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"id": "no-text", "body": "x"}) + "\n")
    return path


def _rows(root: Path) -> list[dict]:
    return pq.read_table(root / "shards").sort_by("id").to_pylist()


@pytest.mark.slow
def test_jsonl_ids_kept_duplicates_dropped_with_keeper(tmp_path, loghub, ray_local):
    corpus = _corpus(tmp_path, loghub)
    manifest = curate(quick_job([str(corpus)], str(tmp_path / "out")), str(tmp_path / "out"))
    t = manifest["totals"]
    kept_ids = {r["id"] for r in _rows(tmp_path / "out")}
    # 20-line blocks of one repetitive sshd log: masked, many are near copies of another block
    near = t["dropped_by_reason"].pop("near_duplicate")
    assert t["balanced"] and t["input"] == 65 and t["kept"] == 60 - near and 0 < near < 60
    assert t["dropped_by_reason"] == {"exact_duplicate": 3, "unreadable:invalid_json": 1, "unreadable:missing_text": 1}
    assert kept_ids < {f"ssh-{i}" for i in range(60)}
    ledger = pq.read_table(tmp_path / "out" / "ledger").to_pylist()
    dups = {r["id"]: r["detail"] for r in ledger if r["reason"] == "exact_duplicate"}
    assert dups == {"dup-a": "ssh-3", "dup-b": "ssh-3", "dup-c": "ssh-10"}
    assert all(r["stage"] == "exact_dedupe" for r in ledger if r["reason"] == "exact_duplicate")
    near_rows = [r for r in ledger if r["reason"] == "near_duplicate"]
    assert len(near_rows) == near and all(r["stage"] == "near_dedupe" for r in near_rows)
    assert all(r["detail"] in kept_ids for r in near_rows)  # the detail names the keeper
    assert not (tmp_path / "out" / "_work").exists()
    names = [s["name"] for s in manifest["stages"]]
    assert names == ["ingest", "unique_ids", "redact", "basic_filter", "exact_dedupe", "near_dedupe"]
    assert manifest["schema_version"] == 1 and len(manifest["config_hash"]) == 16


@pytest.mark.slow
def test_same_input_same_output(tmp_path, loghub, ray_local):
    corpus = _corpus(tmp_path, loghub)
    a = curate(quick_job([str(corpus)], "a"), str(tmp_path / "a"))
    b = curate(quick_job([str(corpus)], "b"), str(tmp_path / "b"))
    assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]
    assert [f["sha256"] for f in a["ledger"]] == [f["sha256"] for f in b["ledger"]]
    again = curate(quick_job([str(corpus)], "a"), str(tmp_path / "a"))
    assert again["resumed"] == "already complete"


@pytest.mark.slow
def test_shards_open_in_pandas_duckdb_and_datasets(tmp_path, loghub, ray_local):
    import datasets
    import duckdb
    import pandas as pd

    out = tmp_path / "out"
    kept = curate(quick_job([str(_corpus(tmp_path, loghub))], str(out)), str(out))["totals"]["kept"]
    df = pd.read_parquet(out / "shards")
    assert len(df) == kept > 0 and {"id", "text", "source", "uri", "kind", "meta"} <= set(df.columns)
    assert not any(c.startswith("_") for c in df.columns)
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/shards/*.parquet')").fetchall()[0][0]
    assert n == kept
    ds = datasets.load_dataset("parquet", data_files=str(out / "shards" / "*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == kept and json.loads(ds[0]["meta"]) is not None


def _job_file(tmp_path: Path, out: Path, man_pages: list[str]) -> Path:
    job = {
        "name": "resume", "output": str(out), "unit_mb": 1,
        "inputs": [{"type": "man", "roots": ["/usr/share/man"], "include": man_pages, "sections": ["1"],
                    "unit_pages": 4}],
        "stages": ["basic_filter", "exact_dedupe"],
    }
    path = tmp_path / f"{out.name}.json"
    path.write_text(json.dumps(job))
    return path


@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_gives_the_same_shards(tmp_path, man_root):
    pages = ["ls", "cp", "mv", "rm", "cat", "grep", "sed", "tar", "gzip", "find", "sort", "uniq", "head", "tail",
             "chmod", "chown", "ln", "mkdir", "touch", "wc", "cut", "tr", "date", "df", "du", "env", "tee", "xargs"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    cmd = [sys.executable, "-m", "jobs.curate", "--quiet", "--num-cpus", "1"]
    subprocess.run(cmd + [str(_job_file(tmp_path, clean, pages))], check=True, env=env, cwd=ROOT, timeout=300)

    job = _job_file(tmp_path, killed, pages)
    proc = subprocess.Popen(cmd + [str(job)], env=env, cwd=ROOT)
    reports = killed / "_work" / "s0"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(reports.glob("u*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists()
    done_before = len(list(reports.glob("u*.json")))
    assert 2 <= done_before < 7
    subprocess.run(cmd + [str(job)], check=True, env=env, cwd=ROOT, timeout=300)

    assert _rows(killed) == _rows(clean)
    a, b = read_manifest(clean), read_manifest(killed)
    assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]
    assert b["totals"]["balanced"] and b["totals"] == a["totals"]


@pytest.mark.slow
def test_a_different_config_on_an_unfinished_output_is_refused(tmp_path, loghub, ray_local):
    from pipeline.config import ConfigError
    from pipeline.runner import Runner
    from jobs.curate import build_job

    corpus = _corpus(tmp_path, loghub)
    out = tmp_path / "out"
    job = build_job(quick_job([str(corpus)], str(out)))
    (out / "_work").mkdir(parents=True)
    (out / "_work" / "plan.json").write_text(json.dumps({"config_hash": "0" * 16, "units": []}))
    with pytest.raises(ConfigError, match="another job configuration"):
        Runner(job).run()
    assert Runner(job).run(overwrite=True)["totals"]["balanced"]
