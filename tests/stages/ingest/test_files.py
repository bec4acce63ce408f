"""A tree of real and broken inputs: nothing crashes, every bad file is a ledger entry with its reason;
markup is rendered or refused."""

import gzip
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from jobs.curate import curate
from pipeline.config import parse_job
from stages.ingest.files import FilesSource
from stages.ingest.man import ManSource


def _bad_tree(root, loghub):
    root.mkdir()
    shutil.copy(loghub / "Linux" / "Linux_2k.log", root / "Linux.log")
    (root / "app.conf").write_text("[server]\nport = 8080\nhost = example.org\n")
    with gzip.open(root / "notes.txt.gz", "wt") as f:
        f.write("A compressed note about the system that is long enough to keep.\n" * 3)
    (root / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e, quite a long line of text\n".encode("latin-1"))
    (root / "unreadable.txt").write_text("secret enough text to be a document\n")
    os.chmod(root / "unreadable.txt", 0)
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("missing-target", root / "dangling")
    (root / "empty.log").write_bytes(b"")
    with open(root / "huge.txt", "wb") as f:
        f.write(b"a" * (50 << 20))
    data = gzip.compress(b"line of a log that will be cut off\n" * 2000)
    (root / "truncated.log.gz").write_bytes(data[: len(data) // 2])
    os.mkfifo(root / "pipe")
    return root


@pytest.mark.slow
def test_bad_inputs_are_ledger_entries_and_the_job_goes_on(tmp_path, loghub, ray_local):
    tree = _bad_tree(tmp_path / "tree", loghub)
    out = tmp_path / "out"
    job = parse_job({"inputs": [{"type": "files", "roots": [str(tree)]}], "stages": ["basic_filter", "exact_dedupe"]})
    manifest = curate(job, str(out))
    assert manifest["totals"]["balanced"]
    ledger = {os.path.basename(r["uri"]): r for r in pq.read_table(out / "ledger").to_pylist()}
    expected = {
        "binary.bin": "unreadable:binary", "latin1.txt": "unreadable:undecodable",
        "loop_a": "unreadable:symlink_loop", "loop_b": "unreadable:symlink_loop",
        "dangling": "unreadable:broken_symlink", "empty.log": "empty", "huge.txt": "too_large",
        "truncated.log.gz": "unreadable:truncated_gz", "pipe": "unreadable:not_regular_file",
    }
    if os.geteuid() != 0:  # root reads a mode-000 file; test_decode covers it as an ordinary user
        expected["unreadable.txt"] = "unreadable:permission_denied"
    for name, reason in expected.items():
        assert ledger[name]["reason"] == reason, (name, ledger[name])
        assert ledger[name]["stage"] == "ingest" and ledger[name]["detail"]
    kept = {os.path.basename(r["uri"]): r for r in pq.read_table(out / "shards").to_pylist()}
    assert {"Linux.log", "app.conf", "notes.txt.gz"} <= set(kept)
    assert kept["Linux.log"]["kind"] == "log" and kept["app.conf"]["kind"] == "config"
    assert json.loads(kept["notes.txt.gz"]["meta"])["compressed"] is True
    assert len(kept) + len(ledger) == manifest["totals"]["input"]


def test_plan_is_deterministic_and_bounded(tmp_path, loghub):
    source = FilesSource("logs", [str(loghub)], unit_mb=0.3, unit_files=5)
    plan = source.plan()
    assert plan == FilesSource("logs", [str(loghub)], unit_mb=0.3, unit_files=5).plan()
    assert all(len(u) <= 5 for u in plan) and len(plan) > 5
    paths = [i["path"] for u in plan for i in u]
    assert paths == sorted(paths) and len(paths) == len(set(paths))


def test_long_lines_are_cut_and_counted(tmp_path):
    (tmp_path / "wide.log").write_text("short line\n" + "x" * 500 + "\nend\n")
    (result,) = list(FilesSource("t", [str(tmp_path)], max_line_chars=100).read([{"path": str(tmp_path / "wide.log")}]))
    doc = result.kept.to_pylist()[0]
    assert max(len(line) for line in doc["text"].split("\n")) == 100
    assert json.loads(doc["meta"])["truncated_lines"] == 1


def test_markup_is_rendered_or_refused_with_its_reason(tmp_path, man_root):
    """A man page's roff is the `man` source's text of the same page; HTML is its main text; what a
    program wrote is a ledger entry that says what it is."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    tree = tmp_path / "doc"
    (tree / "_static").mkdir(parents=True)
    shutil.copy(man_root / "ls.1.gz", tree / "ls.1.gz")
    (tree / "guide.html").write_text("<!DOCTYPE html><html><head><title>The guide</title></head><body><nav>menu</nav>"
                                     "<main><h1>Installing</h1><p>Run the installer as root and follow the prompts "
                                     "until it says that it has finished.</p></main></body></html>")
    (tree / "_static" / "jquery.js").write_text("/*! jQuery v3.6.0 */\n(function(window){ return window; })(this);\n")
    (tree / "bundle.js").write_text("!function(e){" + "e.f=function(c){return c+1};" * 200 + "}(window);")
    (tree / "man.local").write_text(".\\\" site macros\n.de XX\n.ft B\n..\n.ds YY z\n.nr ZZ 1\n")
    (tree / "notes.txt").write_text("Plain notes that stay as they are.\n")
    docs, dropped = FilesSource("doc", [str(tree)]).read_all()
    kept = {os.path.basename(d["uri"]): d for d in docs}
    assert set(kept) == {"ls.1.gz", "guide.html", "notes.txt"}
    (page,) = ManSource("man", [str(man_root.parent)], sections=["1"], include=["ls"]).read_all()[0]
    assert kept["ls.1.gz"]["text"] == page["text"] and kept["ls.1.gz"]["kind"] == "doc"
    assert json.loads(kept["ls.1.gz"]["meta"])["title"].startswith("ls - list directory contents")
    guide = kept["guide.html"]
    assert "Run the installer as root" in guide["text"] and "<p>" not in guide["text"] and guide["kind"] == "doc"
    assert json.loads(guide["meta"])["title"] == "The guide"
    reasons = {os.path.basename(d["uri"]): (d["reason"], d["detail"]) for d in dropped}
    assert reasons["jquery.js"][0] == "vendored_code" and "library" in reasons["jquery.js"][1]
    assert reasons["bundle.js"][0] == "minified" and reasons["man.local"][0] == "roff_source"
    # what is refused is a choice: kept as its kind says, the format named in its meta
    docs, dropped = FilesSource("doc", [str(tree)], refuse=[], render_roff=False).read_all()
    assert {os.path.basename(d["uri"]) for d in dropped} == {"ls.1.gz"}
    assert {json.loads(d["meta"]).get("format") for d in docs} >= {"vendored_code", "minified", "roff_source"}
    with pytest.raises(ValueError, match="unknown format"):
        FilesSource("doc", [str(tree)], refuse=["jquery"])
