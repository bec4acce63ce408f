"""Fuzzing the ingest sources with random bytes, encodings, compressed members and sizes: they
never raise, and every input is a document or a ledger row with a known reason."""

import bz2
import gzip
import json
import lzma
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.ingest.files import FilesSource
from stages.ingest.jsonl import JsonlSource

KNOWN = ("unreadable:", "too_large", "empty")

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
payload = st.one_of(
    st.binary(max_size=2000),
    text.map(lambda t: t.encode("utf-8")),
    text.map(lambda t: t.encode("utf-16")),
    text.map(lambda t: t.encode("latin-1", errors="replace")),
)


@st.composite
def files(draw):
    name = draw(st.sampled_from(["a.log", "b.conf", "c.txt", "d", "e.gz", "f.log.gz", "g.bz2", "h.xz", "i.py"]))
    data = draw(payload)
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".bz2"):
        data = bz2.compress(data)
    elif name.endswith(".xz"):
        data = lzma.compress(data)
    cut = draw(st.one_of(st.none(), st.integers(0, max(0, len(data) - 1))))
    flip = draw(st.one_of(st.none(), st.integers(0, max(0, len(data) - 1))))
    if cut is not None:
        data = data[:cut]
    elif flip is not None and data:
        data = data[:flip] + bytes([data[flip] ^ 0x5A]) + data[flip + 1:]
    return name, data


def _account(source, plan):
    kept = dropped = 0
    for unit in plan:
        for result in source.read(unit):
            kept += result.kept.num_rows
            if result.dropped is not None:
                dropped += result.dropped.num_rows
                assert all(r.startswith(KNOWN) for r in result.dropped.column("reason").to_pylist())
    return kept, dropped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(files(), min_size=1, max_size=12))
def test_random_file_trees(tmp_path_factory, entries):
    root = tmp_path_factory.mktemp("fuzz")
    for i, (name, data) in enumerate(entries):
        (root / f"{i}-{name}").write_bytes(data)
    if len(entries) > 2:
        os.symlink(f"{len(entries) + 5}-missing", root / "dangling")
    source = FilesSource("fuzz", [str(root)], max_file_mb=0.001, unit_files=3)
    plan = source.plan()
    kept, dropped = _account(source, plan)
    assert kept + dropped == sum(len(u) for u in plan) == len(os.listdir(root))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=200), st.dictionaries(st.sampled_from(["id", "text", "kind", "x"]),
                                                                    st.one_of(text, st.integers(), st.none()))
                          .map(lambda d: json.dumps(d).encode())), max_size=30),
       st.floats(0.0001, 0.01))
def test_random_jsonl(tmp_path_factory, lines, unit_mb):
    path = tmp_path_factory.mktemp("fuzz") / "x.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    nonblank = sum(1 for line in path.read_bytes().split(b"\n")[:-1] if line.strip())
    source = JsonlSource("fuzz", [str(path)], unit_mb=unit_mb)
    kept, dropped = _account(source, source.plan())
    assert kept + dropped == nonblank
