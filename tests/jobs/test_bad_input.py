"""Bad input never stops a job: a line whose JSON decodes to a lone surrogate, a file name that
is not UTF-8, two rows with one id, a source that fails mid-unit, and an input path that does not
exist (an error before the job starts)."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from jobs.sigma_command import main
from jobs.curate import curate
from pipeline.config import parse_job
from pipeline.segment import _read_guarded
from stages.ingest.jsonl import JsonlSource


@pytest.mark.slow
def test_lone_surrogates_and_repeated_ids_end_in_the_ledger_or_a_repair(ray_local, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join([
        '{"id": "a", "text": "first row with id a, kept"}',
        '{"id": "b", "text": "a lone surrogate \\ud800 inside a string that is no longer valid unicode"}',
        '{"id": "a", "text": "second row with id a, a different text, dropped"}',
        '{"id": "c", "text": "a surrogate in meta", "tag": "\\udfff"}',
    ]) + "\n")
    files = tmp_path / "files"
    files.mkdir()
    (files / "app.log").write_text("a log line that is long enough to pass the filter\n")
    with open(os.fsencode(files) + b"/bad-\xff-name.conf", "w") as f:
        f.write("key = value on a config line that is long enough\n")
    second = tmp_path / "second.jsonl"  # another unit: the rule is global, by input order
    second.write_text('{"id": "c", "text": "a row of another file with id c, dropped"}\n')
    job = parse_job({"name": "bad", "inputs": [{"type": "jsonl", "paths": [str(corpus), str(second)], "unit_mb": 0.0001},
                                                {"type": "files", "roots": [str(files)]}],
                     "stages": [{"basic_filter": {"min_chars": 10}}], "writer": {"rejects": "all"}})
    manifest = curate(job, str(tmp_path / "out"))
    assert manifest["totals"]["balanced"]
    kept = pq.read_table(tmp_path / "out" / "shards").to_pylist()
    ledger = pq.read_table(tmp_path / "out" / "ledger").to_pylist()
    by_id = {r["id"]: r for r in kept}
    assert len(by_id) == len(kept) == 5
    assert by_id["a"]["text"] == "first row with id a, kept"
    assert "\ufffd" in by_id["b"]["text"] and json.loads(by_id["b"]["meta"])["repaired"] == ["text:lone_surrogate"]
    assert json.loads(by_id["c"]["meta"])["repaired"] == ["meta:lone_surrogate"]
    bad_name = next(r for r in kept if "name.conf" in r["uri"])
    assert "\ufffd" in bad_name["uri"] and json.loads(bad_name["meta"])["repaired"] == ["uri:lone_surrogate"]
    dups = [r for r in ledger if r["reason"] == "duplicate_id"]
    assert sorted(r["id"] for r in dups) == ["a", "c"] and all(r["stage"] == "unique_ids" for r in dups)
    assert next(r for r in dups if r["id"] == "c")["detail"].startswith(f"kept {corpus}#")


def test_a_source_that_raises_mid_unit_leaves_a_ledger_entry(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n')
    source = JsonlSource("j", [str(path)])
    unit = source.plan()[0]
    path.unlink()  # vanished between planning and reading
    results = list(_read_guarded(source, unit, 0))
    assert [r.dropped["reason"][0].as_py() for r in results] == ["unreadable:io_error"]

    class Breaks(JsonlSource):
        def read(self, payload):
            yield from ()
            raise RuntimeError("a bug")

    results = list(_read_guarded(Breaks("j", [str(path)]), unit, 3))
    row = results[0].dropped.to_pylist()[0]
    assert row["reason"] == "unreadable:source_error" and row["detail"] == "RuntimeError: a bug"


def test_a_missing_input_path_is_an_error_before_the_job_starts(tmp_path, capsys):
    missing = tmp_path / "corpus.jsnol"
    assert main(["curate", "--input", str(missing), "--output", str(tmp_path / "out")]) == 2
    assert str(missing) in capsys.readouterr().err
    job = tmp_path / "job.yaml"
    job.write_text(json.dumps({"name": "typo", "output": str(tmp_path / "out"),
                               "inputs": [{"type": "files", "roots": [str(tmp_path / "etc-typo")]}]}))
    assert main(["curate", str(job)]) == 2
    err = capsys.readouterr().err
    assert "etc-typo" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()
