"""Normalisation before shingling: lines of one log event template become one text."""

from __future__ import annotations

import csv
import collections

import numpy as np
import pyarrow as pa

from stages.dedupe import minhash as M
from stages.dedupe.normalise import detect_kinds, log_mode, looks_like_log, lower, normalise, text_mode


def _structured(loghub, system):
    path = loghub / system / f"{system}_2k.log"
    lines = path.read_text(errors="replace").splitlines()
    with open(f"{path}_structured.csv", encoding="utf-8", errors="replace") as f:
        events = [row["EventId"] for row in csv.DictReader(f)]
    return lines, events


def test_hdfs_lines_of_one_template_normalise_alike(loghub):
    """HDFS lines differ in timestamps, block ids, IPs, ports and sizes: masked, each of the
    ground-truth templates keeps at most a few distinct texts, and no two templates share one."""
    lines, events = _structured(loghub, "HDFS")
    norm = log_mode(pa.array(lines)).to_pylist()
    by_template = collections.defaultdict(set)
    owners = collections.defaultdict(set)
    for event, text in zip(events, norm):
        by_template[event].add(" ".join(text.split()))
        owners[" ".join(text.split())].add(event)
    assert len(by_template) == 14
    assert sum(len(v) for v in by_template.values()) <= 3 * len(by_template)  # 2,000 raw lines
    assert all(len(v) == 1 for v in owners.values())
    receiving = [t for e, t in zip(events, norm) if e == "E13"]  # "Receiving block blk_<*> src: /<*>:<*> dest: ..."
    assert len(receiving) > 100 and len({" ".join(t.split()) for t in receiving}) == 1


def test_masked_lines_of_one_template_share_their_shingles(loghub):
    lines, events = _structured(loghub, "Zookeeper")
    first = {}
    for line, event in zip(lines, events):
        first.setdefault(event, []).append(line)
    pairs = [(v[0], v[-1]) for v in first.values() if len(v) > 1 and v[0] != v[-1]]
    raw = [set(M.python_shingles(text_mode(pa.array([a])).to_pylist()[0], 3)) for a, _ in pairs]
    raw_b = [set(M.python_shingles(text_mode(pa.array([b])).to_pylist()[0], 3)) for _, b in pairs]
    masked = [set(M.python_shingles(log_mode(pa.array([a])).to_pylist()[0], 3)) for a, _ in pairs]
    masked_b = [set(M.python_shingles(log_mode(pa.array([b])).to_pylist()[0], 3)) for _, b in pairs]
    jaccard = lambda a, b: len(a & b) / len(a | b)  # noqa: E731
    before = np.mean([jaccard(a, b) for a, b in zip(raw, raw_b)])
    after = np.mean([jaccard(a, b) for a, b in zip(masked, masked_b)])
    assert after > 0.9 > before


def test_unknown_kinds_are_detected_from_the_content(loghub, man_root):
    heads = [p.read_text(errors="replace")[:5000] for p in sorted(loghub.glob("*/*_2k.log"))]
    assert len(heads) == 12 and looks_like_log(pa.array(heads)).all()
    page = "LS(1)\n\nNAME\n    ls - list directory contents\n\nSYNOPSIS\n    ls [OPTION]... [FILE]...\n"
    unit = "# sshd\n[Unit]\nDescription=OpenBSD Secure Shell server\nAfter=network.target\n\n[Service]\nType=notify\n"
    yaml = "name: web\nreplicas: 3\nimage: nginx:1.25\n"
    texts = pa.array([heads[3], page, unit, yaml, "", heads[3]], pa.large_string())
    kinds = np.array(["other", "", "other", "", "", "doc"], dtype=object)
    assert detect_kinds(texts, kinds).tolist() == ["log", "", "config", "config", "", "doc"]
    modes = np.array(["log", "text"], dtype=object)
    out = normalise(pa.array([heads[3], page]), modes).to_pylist()
    assert "var" in out[0].split() and out[1] == page.lower()


def test_case_folds_beyond_ascii_and_punctuation_separates_words():
    mixed = pa.array(["ÀBC Déjà ×", "ASCII", "ΑΒΓ Straße", "x‐Y “Q”"], pa.large_string())
    assert lower(mixed).to_pylist() == [
        "àbc déjà ×", "ascii", "αβγ straße", "x‐y “q”"]
    a, b = text_mode(pa.array(["Hello,   WORLD‐wide “web”", "hello world wide web"])).to_pylist()
    assert M.python_shingles(a, 2) == M.python_shingles(b, 2)
