"""Fuzzing the ingest sources with random bytes, encodings, compressed members and sizes: they
never raise, and every input is a document or a ledger row with a known reason. Then every
source in one real job (arbitrary JSON values with lone surrogates, byte strings, Parquet
schemas, a file name that is not UTF-8): the job finishes, the ledger balances, ids are unique,
and a second run gives the same shards and ledger."""

import bz2
import gzip
import json
import lzma
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
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


# -- every source through a real job: arbitrary JSON, bytes and Parquet schemas ---------------------

odd_text = st.one_of(text, st.builds(lambda a, b: a + b, text, st.sampled_from(["\ud800", "\udfff", "x\udc80y"])))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), odd_text),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(["id", "text", "kind", "meta", "x"]),
                                                                   inner, max_size=4)), max_leaves=8)
jsonl_line = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),  # lone surrogates as `\ud800` escapes
                       st.dictionaries(st.sampled_from(["id", "text", "kind", "meta"]), odd_text, min_size=1)
                       .map(lambda d: json.dumps(d).encode()), st.binary(max_size=80))
safe_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)  # what an Arrow string can hold
COLUMN_TYPES = {
    "string": (pa.string(), safe_text), "large_string": (pa.large_string(), safe_text),
    "int": (pa.int64(), st.integers(-2**63, 2**63 - 1)), "float": (pa.float64(), st.floats()),
    "bool": (pa.bool_(), st.booleans()), "binary": (pa.binary(), st.binary(max_size=20)),
    "list": (pa.list_(pa.string()), st.lists(safe_text, max_size=3)),
    "struct": (pa.struct([("a", pa.int32())]), st.builds(lambda a: {"a": a}, st.integers(-2**31, 2**31 - 1))),
    "null": (pa.null(), st.none()),
}


@st.composite
def parquet_tables(draw):
    names = draw(st.lists(st.sampled_from(["id", "text", "kind", "meta", "source", "uri", "x"]), unique=True,
                          min_size=1, max_size=4))
    rows = draw(st.integers(0, 5))
    columns = {}
    for name in names:
        dtype, values = COLUMN_TYPES[draw(st.sampled_from(sorted(COLUMN_TYPES)))]
        columns[name] = pa.array(draw(st.lists(st.one_of(st.none(), values), min_size=rows, max_size=rows)), dtype)
    return pa.table(columns)


def _job_outputs(out):
    tables = {}
    for part in ("shards", "ledger"):
        files = sorted((out / part).glob("*.parquet")) if (out / part).exists() else []
        tables[part] = pa.concat_tables([pq.read_table(f) for f in files]).sort_by("id").to_pylist() if files else []
    return tables


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(lines=st.lists(jsonl_line, min_size=1, max_size=12), blobs=st.lists(payload, min_size=1, max_size=4),
       table=parquet_tables(), broken=st.binary(max_size=64))
@pytest.mark.slow
def test_every_source_in_a_job_never_stops_balances_and_repeats(ray_local, tmp_path_factory, lines, blobs, table,
                                                                broken):
    from jobs.curate import curate
    from pipeline.config import parse_job

    root = tmp_path_factory.mktemp("fuzz-job")
    (root / "in.jsonl").write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    tree = root / "tree"
    tree.mkdir()
    for i, blob in enumerate(blobs):
        (tree / f"{i}.log").write_bytes(blob)
    with open(os.fsencode(tree) + b"/name-\xff.conf", "wb") as f:  # a file name that is not UTF-8
        f.write(blobs[0])
    pq.write_table(table, root / "in.parquet", row_group_size=2)
    (root / "broken.parquet").write_bytes(broken)
    (root / "broken.warc.gz").write_bytes(broken)
    job = parse_job({"name": "fuzz", "inputs": [
        {"type": "jsonl", "paths": [str(root / "in.jsonl")], "unit_mb": 0.0002},
        {"type": "parquet", "paths": [str(root / "in.parquet"), str(root / "broken.parquet")]},
        {"type": "files", "roots": [str(tree)]},
        {"type": "logs", "paths": [str(tree)]},
        {"type": "warc", "paths": [str(root / "broken.warc.gz")]}],
        "stages": ["redact", {"basic_filter": {"min_chars": 1}}], "writer": {"rejects": "none"}})
    runs = []
    for name in ("out1", "out2"):
        manifest = curate(job, str(root / name))
        assert manifest["totals"]["balanced"]
        runs.append(_job_outputs(root / name))
    assert runs[0] == runs[1]
    kept_ids = [r["id"] for r in runs[0]["shards"]]
    assert len(kept_ids) == len(set(kept_ids))
