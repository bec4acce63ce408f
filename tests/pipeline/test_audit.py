"""The audit of kept documents: each check on inline texts, and `sigma audit` / `sigma stats` on
real outputs, one of a JSONL corpus that holds markup source (found) and one of the same files
read by the files source (rendered or refused: nothing found)."""

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.curate import curate
from jobs.sigma_command import main as sigma
from pipeline.audit import Audit
from pipeline.config import parse_job

ROFF = ".TH FOO 1\n.SH NAME\nfoo \\- bar\n.SH SYNOPSIS\n.B foo\n.SH DESCRIPTION\nFoo.\n.TP\n.B \\-v\nverbose\n"
HTML = "<html><body>" + "<p>One paragraph of the page.</p>\n" * 12 + "</body></html>\n"
BUNDLE = "!function(e){" + "e.f=function(c){return c+1};" * 60 + "}(window);\n"
PEM = "Our certificate:\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PROSE = "A man page may show a request such as .TH in its text, or <p> once, and that is fine.\n"
TEXTS = {"roff": ROFF, "html": HTML, "minified": BUNDLE, "pem": PEM, "prose": PROSE,
         "base64": "data " + "QUJD" * 60 + "\n"}


def test_checks_count_documents_per_kind_with_samples():
    audit = Audit(samples=1)
    audit.add(pa.table({"id": list(TEXTS), "uri": [f"mem://{k}" for k in TEXTS], "kind": ["doc"] * len(TEXTS),
                        "text": list(TEXTS.values())}))
    other = Audit(samples=1)
    other.add(pa.table({"id": ["a-first"], "uri": ["mem://a"], "kind": ["code"], "text": [BUNDLE]}))
    audit.merge(other)
    checks = audit.to_dict()["checks"]
    assert {n: c["documents"] for n, c in checks.items()} == {
        "roff": 1, "texinfo": 0, "html": 1, "minified": 2, "pem": 1, "base64": 1, "long_line": 2}
    assert checks["minified"]["by_kind"] == {"code": 1, "doc": 1}
    assert [s["id"] for s in checks["minified"]["samples"]] == ["a-first"]  # the smallest id of both parts
    assert ".TH FOO 1" in checks["roff"]["samples"][0]["excerpt"]


@pytest.fixture(scope="module")
def markup(tmp_path_factory):
    base = tmp_path_factory.mktemp("markup")
    tree = base / "tree"
    tree.mkdir()
    man = Path("/usr/share/man/man1/ls.1.gz")
    (tree / "ls.1").write_bytes(gzip.decompress(man.read_bytes()) if man.exists() else ROFF.encode())
    (tree / "page.html").write_text("<!DOCTYPE html>" + HTML.replace("<body>", "<body><main>").replace(
        "</body>", "</main></body>"))
    (tree / "bundle.js").write_text(BUNDLE)
    (tree / "notes.txt").write_text(PROSE * 3)
    corpus = base / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.name, "text": p.read_text(errors="replace"), "kind": "doc"}) + "\n"
                              for p in sorted(tree.iterdir()) if p.name != "ls.1")
                      + json.dumps({"id": "ls.1", "text": ROFF, "kind": "config"}) + "\n")
    return base, tree, corpus


@pytest.mark.slow
def test_sigma_audit_finds_markup_in_a_corpus_and_none_once_files_are_read(markup, ray_local, capsys):
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    base, tree, corpus = markup
    raw, files = base / "raw", base / "files"
    curate(parse_job({"inputs": [{"type": "jsonl", "paths": [str(corpus)]}], "stages": []}), str(raw))
    curate(parse_job({"inputs": [{"type": "files", "roots": [str(tree)]}], "stages": []}), str(files))
    assert sigma(["audit", str(raw), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["checks"]
    assert found["roff"]["by_kind"] == {"config": 1} and found["html"]["documents"] == 1
    assert found["minified"]["documents"] == 1
    assert sigma(["audit", str(files), "--json"]) == 0
    assert not any(c["documents"] for c in json.loads(capsys.readouterr().out)["checks"].values())
    assert sigma(["stats", str(raw), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["audit"]["checks"]["roff"]["documents"] == 1
    assert sigma(["audit", str(base / "nothing")]) == 2
