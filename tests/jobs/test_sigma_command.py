"""The `sigma` command line, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


import configs
from jobs.curate import build_job, resolve_job_file
from pipeline.config import load_job

ROOT = Path(__file__).resolve().parents[2]


def sigma(*args, check=True):
    return subprocess.run([sys.executable, "-m", "jobs.sigma_command", *args], cwd=ROOT, capture_output=True, text=True,
                          check=check, timeout=600)


def test_help_explains_with_examples():
    out = sigma("--help").stdout
    assert "curate" in out and "stats" in out and "examples" in out
    out = sigma("curate", "--help").stdout
    assert "--input" in out and "--address" in out and "resumes" in out and "example" in out
    assert "--json" in sigma("stats", "--help").stdout


def test_every_command_that_writes_a_folder_takes_output_and_its_alias_out():
    from jobs.sigma_command import build_parser

    parser = build_parser()
    commands = [["tokenizer", "train", "--data", "d", "--vocab-size", "512"], ["train", "c.yaml", "--data", "d"], ["export", "run"],
                ["convert", "smollm2", "--k-heads", "1"], ["ablate", "train", "bundle"], ["ablate", "report", "bundle"]]
    for words in commands:
        for flag in ("--output", "--out"):
            args = parser.parse_args([*words, flag, "somewhere"])
            assert getattr(args, "out", None) == "somewhere", (words, flag)


def test_default_job_file_is_valid():
    config = load_job(resolve_job_file("local-system"))
    job = build_job(config, "out/x")
    assert [s.kind for s in job.sources] == ["man", "files"]
    assert resolve_job_file("local-system") == configs.shipped("local-system.yaml")


def test_clear_errors_exit_2(tmp_path):
    r = sigma("curate", "no-such-job", check=False)
    assert r.returncode == 2 and "no job file 'no-such-job'" in r.stderr and "local-system" in r.stderr
    r = sigma("curate", "--input", str(tmp_path), check=False)
    assert r.returncode == 2 and "--output" in r.stderr
    r = sigma("stats", str(tmp_path), check=False)
    assert r.returncode == 2 and "manifest.json" in r.stderr


@pytest.mark.slow
def test_curate_man_pages_and_loghub_then_stats(tmp_path, loghub, man_root):
    job = {
        "name": "small-system", "output": str(tmp_path / "out"),
        "inputs": [{"type": "man", "roots": [str(man_root.parent)], "sections": ["1"],
                    "include": ["ls", "cp", "grep", "tar", "ssh", "git*"]},
                   {"type": "files", "roots": [str(loghub)], "include": ["*.log", "*.csv"]}],
        "stages": ["basic_filter", "exact_dedupe"],
    }
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(job))
    r = sigma("curate", str(path), "--num-cpus", "2")
    assert "balanced" in r.stdout and "documents by kind" in r.stdout
    stats = json.loads(sigma("stats", str(tmp_path / "out"), "--json").stdout)
    assert stats["balance"]["balanced"]
    assert stats["by_source"]["man"]["documents"] >= 4
    assert stats["by_kind"]["log"]["documents"] == 12
    assert stats["by_kind"]["doc"]["documents"] >= 4
    assert sum(h["documents"] for h in stats["length_histogram"]) == stats["documents"]
    names = [s["name"] for s in stats["stages"]]
    assert names == ["ingest", "unique_ids", "basic_filter", "exact_dedupe"]


@pytest.mark.slow
def test_verify_finds_changed_bytes(tmp_path, loghub):
    r = sigma("curate", "--input", str(loghub / "Apache"), "--output", str(tmp_path / "out"), "--quiet")
    assert r.returncode == 0
    assert sigma("verify", str(tmp_path / "out")).returncode == 0
    shard = next((tmp_path / "out" / "shards").glob("*.parquet"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    r = sigma("verify", str(tmp_path / "out"), check=False)
    assert r.returncode == 1 and "checksum differs" in r.stderr


def test_quick_form_guesses_input_types(tmp_path, man_root):
    from jobs.curate import input_for_path

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text("{}\n")
    (tmp_path / "corpus" / "b.jsonl.gz").write_bytes(b"")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "x.parquet").write_bytes(b"")
    assert input_for_path(str(tmp_path / "corpus"))["type"] == "jsonl"
    assert input_for_path(str(tmp_path / "tables"))["type"] == "parquet"
    assert input_for_path(str(tmp_path / "corpus" / "a.jsonl"))["type"] == "jsonl"
    assert input_for_path(str(man_root.parent))["type"] == "man"
    (tmp_path / "corpus" / "notes.txt").write_text("x")
    assert input_for_path(str(tmp_path / "corpus"))["type"] == "files"
