"""configs/system-sources.yaml, run through `sigma curate` with its inputs pointed at local data:
logs, configs, a git repository, a WARC file and a crawl of a site on 127.0.0.1 all arrive in one
output, balance in the ledger, and show up in `sigma stats`."""

import io
import json
import shutil
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from jobs.sigma_command import main as sigma
from jobs.curate import curate, resolve_job_file
from pipeline.config import parse_job
from pipeline.stats import compute_stats


def _warc(path, manual):
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    for page in ("getting-started.html", "logs.html", "urlmapping.html"):
        body = (manual / "en" / page).read_bytes()
        headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(f"https://httpd.example/{page}", "response",
                                                      payload=io.BytesIO(body), http_headers=headers))
    path.write_bytes(out.getvalue())


def _repo(root, loghub):
    root.mkdir()
    shutil.copy(loghub / "Zookeeper" / "Zookeeper_2k.log", root / "zookeeper.log")
    (root / "README.md").write_text("# Ops notes\n\nHow this cluster is run, and what its logs say.\n")
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", "-C", str(root)]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Keep the operations notes and a Zookeeper log"], check=True)


@pytest.mark.slow
def test_one_job_file_runs_every_new_source(tmp_path, loghub, doc_site, apache_manual, ray_local, capsys):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / "logs").mkdir()
    shutil.copy(loghub / "HDFS" / "HDFS_2k.log", tmp_path / "logs" / "hdfs.log")
    (tmp_path / "logs" / "core.log").write_bytes(b"\x00ELF" * 64)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "demo.service").write_text("[Unit]\nDescription=Demo service\n\n[Service]\nExecStart=/usr/bin/demo --serve\n")
    (etc / "app.json").write_text('{"listen": 8080, "workers": }\n')
    _repo(tmp_path / "repo", loghub)
    _warc(tmp_path / "pages.warc.gz", apache_manual)

    data = yaml.safe_load(resolve_job_file("system-sources").read_text())
    local = {
        "logs": {"paths": [str(tmp_path / "logs")]},
        "files": {"roots": [str(etc)]},
        "git": {"repos": [str(tmp_path / "repo")]},
        "warc": {"paths": [str(tmp_path / "pages.warc.gz")]},
        "crawl": {"seeds": [f"{doc_site.base}/manual/en/programs/index.html"], "path_prefixes": ["/manual/en/programs/"],
                  "max_pages": 4, "delay_s": 0.05, "allow_addresses": ["loopback"],
                  "warc_dir": str(tmp_path / "crawl-warc")},
    }
    for item in data["inputs"]:
        item.update(local[item["type"]])
    assert {i["type"] for i in data["inputs"]} == set(local)
    out = tmp_path / "out"
    manifest = curate(parse_job(data), str(out))
    assert manifest["totals"]["balanced"]

    stats = compute_stats(out)
    assert {"log", "file", "git", "warc", "crawl"} <= set(stats["by_source"])
    assert stats["balance"]["balanced"]
    ledger = pq.read_table(out / "ledger").to_pylist()
    reasons = {r["reason"] for r in ledger}
    assert "unreadable:binary" in reasons  # the core dump among the logs
    rows = pq.read_table(out / "shards").to_pylist()
    config = {json.loads(r["meta"]).get("path", "").rsplit("/", 1)[-1]: json.loads(r["meta"]) for r in rows
              if r["kind"] == "config"}
    assert config["demo.service"]["config_format"] == "systemd" and config["demo.service"]["config_parsed"]
    assert config["app.json"]["config_format"] == "json" and config["app.json"]["config_parsed"] is False
    logs = [json.loads(r["meta"]) for r in rows if r["source"] == "log"]
    assert logs and all(m["log_format"] == "hdfs" and m["templates"] for m in logs)
    assert len(list((tmp_path / "crawl-warc").glob("*.warc.gz"))) == 1

    assert sigma(["stats", str(out)]) == 0
    shown = capsys.readouterr().out
    for source in ("log", "file", "git", "warc", "crawl"):
        assert source in shown
