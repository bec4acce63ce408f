"""Precision, recall and F1 of duplicate pairs on a labelled near-duplicate set.

The set is JSONL with `id`, `text`, `kind` and `group` (documents of one group are duplicates of
one another; see `bench/dedupe_evalset.py`). The stage's clusters are its keepers with the
documents dropped in their name; a pair is predicted a duplicate when both sit in one cluster.

    python bench/dedupe_eval.py EVAL.jsonl[.gz] [--split test] [--curve] [--compare]
    python bench/dedupe_eval.py EVAL.jsonl --curate     # through `sigma curate`, as a user runs it

`--curve` sweeps the verification threshold; `--compare` runs the verification modes and shingle
sizes side by side; `--curate` runs the whole curate job (ids kept, drops in the ledger with the
keeper's id) and scores its ledger.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(path: str, split: str | None) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    return [d for d in docs if not split or d.get("split") == split]


def pairs(n: int) -> int:
    return n * (n - 1) // 2


def score(docs: list[dict], keeper_of: dict[str, str]) -> dict:
    """Pairwise precision, recall and F1; `keeper_of` maps each dropped id to its keeper's id."""
    cluster = {d["id"]: keeper_of.get(d["id"], d["id"]) for d in docs}
    gold = collections.Counter(d["group"] for d in docs)
    pred = collections.Counter(cluster.values())
    both = collections.Counter((d["group"], cluster[d["id"]]) for d in docs)
    tp = sum(pairs(c) for c in both.values())
    p_all, g_all = sum(pairs(c) for c in pred.values()), sum(pairs(c) for c in gold.values())
    precision = tp / p_all if p_all else 1.0
    recall = tp / g_all if g_all else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "predicted": p_all, "gold": g_all,
            "removed": len(keeper_of)}


def breakdown(docs: list[dict], keeper_of: dict[str, str]) -> tuple[dict, dict]:
    """Recall of (source, copy) pairs by edit op; false-positive pairs by the kinds of sources."""
    cluster = {d["id"]: keeper_of.get(d["id"], d["id"]) for d in docs}
    source = {d["group"]: d["id"] for d in docs if not d["edit"]}
    recall: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for d in docs:
        if d["edit"]:
            for op in d["edit"].split("; "):
                hit = cluster[d["id"]] == cluster[source[d["group"]]]
                recall[op][0] += hit
                recall[op][1] += 1
    members = collections.defaultdict(list)
    for d in docs:
        members[cluster[d["id"]]].append(d)
    false = collections.Counter()
    for group in members.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a["group"] != b["group"]:
                    false[" / ".join(sorted({a["id"].split("/")[0], b["id"].split("/")[0]}))] += 1
    return dict(recall), dict(false)


def run_stage(docs: list[dict], options: dict) -> tuple[dict[str, str], dict]:
    """Signals and decision of the stage on Ray, without the rest of a curate job."""
    import pyarrow as pa
    import ray.data

    from stages.dedupe.near import NearDedupe

    stage = NearDedupe(**options)
    table = pa.table({"id": [d["id"] for d in docs], "text": pa.array([d["text"] for d in docs], pa.large_string()),
                      "kind": [d.get("kind") or "other" for d in docs],
                      "_unit": pa.array([0] * len(docs), pa.int32()), "_row": pa.array(range(len(docs)), pa.int64())})
    cols = ["id", "_unit", "_row", *stage.signal_columns()]
    signals = stage.signal(table).select(cols)
    ds = ray.data.from_arrow([signals.slice(i, 512) for i in range(0, signals.num_rows, 512)])
    drops = stage.decide(ds, len(docs)).to_arrow_refs()
    ids = table["id"].to_pylist()
    keeper_of = {}
    for ref in drops:
        t = ray.get(ref)
        for row, keeper in zip(t["_row"].to_pylist(), t["detail"].to_pylist()):
            keeper_of[ids[row]] = keeper
    return keeper_of, dict(stage.stats)


def run_curate(docs: list[dict], options: dict) -> dict[str, str]:
    """The user's path: a JSONL file through `curate` with near_dedupe; drops from the ledger."""
    import pyarrow.parquet as pq

    from jobs.curate import curate
    from pipeline.config import parse_job

    work = tempfile.mkdtemp(prefix="sigma-dedupe-eval-")
    path = os.path.join(work, "input.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"], "kind": d.get("kind")}, ensure_ascii=False) + "\n")
    job = parse_job({"name": "dedupe-eval", "inputs": [{"type": "jsonl", "paths": [path]}],
                     "stages": [{"near_dedupe": options}]})
    manifest = curate(job, os.path.join(work, "out"))
    assert manifest["totals"]["balanced"], "the ledger does not balance"
    ledger = pq.read_table(os.path.join(work, "out", "ledger"))
    return {i: k for i, k, s in zip(ledger["id"].to_pylist(), ledger["detail"].to_pylist(), ledger["stage"].to_pylist())
            if s == "near_dedupe"}


def fmt(name: str, m: dict, seconds: float | None = None) -> str:
    t = f" {seconds:6.1f}" if seconds is not None else ""
    return (f"{name:34s} {m['precision']:9.4f} {m['recall']:7.4f} {m['f1']:7.4f} {m['tp']:7d} {m['predicted']:9d}"
            f" {m['gold']:6d} {m['removed']:7d}{t}")


HEADER = (f"{'run':34s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'tp':>7s} {'predicted':>9s} {'gold':>6s} "
          f"{'removed':>7s}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval", help="labelled JSONL (from bench/dedupe_evalset.py)")
    ap.add_argument("--split", choices=["dev", "test"], help="only this split")
    ap.add_argument("--curve", action="store_true", help="sweep the threshold")
    ap.add_argument("--compare", action="store_true", help="verification modes and shingle sizes side by side")
    ap.add_argument("--curate", action="store_true", help="run through the curate job and score its ledger")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                    help="near_dedupe option for every run, e.g. --option threshold=0.75")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    docs = load(args.eval, args.split)
    base = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    groups = len({d["group"] for d in docs})
    print(f"{len(docs)} documents, {groups} groups" + (f" ({args.split})" if args.split else ""))

    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray.data.DataContext.get_current().print_on_execution_start = False
    print(HEADER + f" {'s':>6s}")
    runs = [("default" + (f" {base}" if base else ""), base)]
    if args.compare:
        runs += [(f"verify={v}", {**base, "verify": v}) for v in ("signature", None)]
        runs += [(f"ngram={n}", {**base, "ngram": n}) for n in (3, 4, 7)]
        runs += [("normalise=text", {**base, "normalise": "text"})]
    for name, options in runs:
        start = time.perf_counter()
        keeper_of, stats = run_stage(docs, options)
        print(fmt(name, score(docs, keeper_of), time.perf_counter() - start), stats)
        if name.startswith("default"):
            recall, false = breakdown(docs, keeper_of)
            default_keepers = keeper_of
    if args.curve:
        for t in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
            keeper_of, _ = run_stage(docs, {**base, "threshold": t})
            print(fmt(f"threshold={t}", score(docs, keeper_of)))
    if args.curate:
        start = time.perf_counter()
        keeper_of = run_curate(docs, base)
        print(fmt("sigma curate (ledger)", score(docs, keeper_of), time.perf_counter() - start))
        assert keeper_of == default_keepers, "curate and the stage alone disagree"
    print("\nrecall of (source, edited copy) pairs by edit:")
    for op, (hit, total) in sorted(recall.items()):
        print(f"  {op:18s} {hit:4d}/{total:<4d} {hit / total:.3f}")
    print("false-positive pairs by source:", false or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
