"""What changed between two curate runs (or loop rounds): configuration, counts, drops by reason,
distributions, and the documents added or removed, by id, with why B dropped what A kept."""

from __future__ import annotations

from pathlib import Path

from pipeline.manifest import read_manifest
from pipeline.stats import compute_stats


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _delta(a: dict, b: dict, absent: int | None = 0) -> dict:
    """Each key's value in A and B and B - A. A key one side lacks counts as `absent` there: 0 for
    counts, None for a stage that run never ran (its delta is None too)."""
    keys = list(dict.fromkeys(list(a) + list(b)))
    out = {}
    for k in keys:
        va, vb = a.get(k, absent), b.get(k, absent)
        if va != vb or k in a and k in b:
            out[k] = {"a": va, "b": vb, "delta": None if va is None or vb is None else vb - va}
    return out


def _files(root: Path, manifest: dict, key: str) -> list[str]:
    return [str(root / r["path"]) for r in manifest.get(key, [])]


def diff_runs(a: str | Path, b: str | Path, sample: int = 10) -> dict:
    import duckdb

    a, b = Path(a), Path(b)
    ma, mb = read_manifest(a), read_manifest(b)
    fa, fb = _flatten(ma["config"]), _flatten(mb["config"])
    config = {k: {"a": fa.get(k), "b": fb.get(k)} for k in sorted(set(fa) | set(fb))
              if fa.get(k) != fb.get(k) and k != "output"}
    sa, sb = compute_stats(a), compute_stats(b)
    con = duckdb.connect()
    for name, root, manifest in (("a", a, ma), ("b", b, mb)):
        shards, ledger = _files(root, manifest, "files"), _files(root, manifest, "ledger")
        con.execute(f"create view {name}_ids as " + (f"select id from read_parquet({shards!r})" if shards
                                                      else "select null::varchar as id where false"))
        con.execute(f"create view {name}_ledger as " + (
            f"select id, stage, reason, detail from read_parquet({ledger!r})" if ledger
            else "select null::varchar as id, null::varchar as stage, null::varchar as reason, "
                 "null::varchar as detail where false"))
    ids = {}
    for label, new, old in (("added", "b", "a"), ("removed", "a", "b")):
        query = f"select id from {new}_ids except select id from {old}_ids"
        count = con.execute(f"select count(*) from ({query})").fetchone()[0]
        rows = con.execute(f"select d.id, l.stage, l.reason, l.detail from ({query}) d left join {old}_ledger l "
                           f"using (id) order by d.id limit {int(sample)}").fetchall()
        why = con.execute(f"select coalesce(l.reason, '(not in the input)') r, count(*) from ({query}) d "
                          f"left join {old}_ledger l using (id) group by r order by 2 desc").fetchall()
        ids[label] = {"count": count, "by_reason_in_other_run": dict(why),
                      "sample": [{"id": r[0], "stage": r[1], "reason": r[2], "detail": r[3]} for r in rows]}
    return {
        "a": str(a), "b": str(b),
        "config": config,
        "totals": _delta({k: ma["totals"][k] for k in ("input", "kept", "dropped")},
                         {k: mb["totals"][k] for k in ("input", "kept", "dropped")}),
        "dropped_by_reason": _delta(ma["totals"]["dropped_by_reason"], mb["totals"]["dropped_by_reason"]),
        "stages_out": _delta({s["name"]: s["docs_out"] for s in ma["stages"]},
                             {s["name"]: s["docs_out"] for s in mb["stages"]}, absent=None),
        "by_source": _delta({k: v["documents"] for k, v in sa["by_source"].items()},
                            {k: v["documents"] for k, v in sb["by_source"].items()}),
        "by_kind": _delta({k: v["documents"] for k, v in sa["by_kind"].items()},
                          {k: v["documents"] for k, v in sb["by_kind"].items()}),
        "text_bytes": {"a": sa["text_bytes"], "b": sb["text_bytes"], "delta": sb["text_bytes"] - sa["text_bytes"]},
        "length_histogram": _delta({h["min_chars"]: h["documents"] for h in sa["length_histogram"]},
                                   {h["min_chars"]: h["documents"] for h in sb["length_histogram"]}),
        "ids": ids,
    }
