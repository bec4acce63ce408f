"""Precision, recall and F1 of duplicate pairs on a labelled near-duplicate set.

The set is JSONL with `id`, `text`, `kind` and `group` (documents of one group are duplicates of
one another; see `bench/dedupe_evalset.py`). The stage's clusters are its keepers with the
documents dropped in their name; a pair is predicted a duplicate when both sit in one cluster.

    python bench/dedupe_eval.py EVAL.jsonl[.gz] [--split test] [--curve] [--compare]
    python bench/dedupe_eval.py EVAL.jsonl --curate     # through `sigma curate`, as a user runs it
    python bench/dedupe_eval.py EVAL.jsonl --ledger OUT  # score a finished curate output's ledger
    python bench/dedupe_eval.py --loghub ../shared/data/loghub   # log lines, grouped by event template

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


def loghub_docs(root: str, per_system: int) -> list[dict]:
    """Log lines labelled by loghub's ground-truth event templates: lines of one template of one
    system form a group (what template-aware dedupe should merge)."""
    import csv
    import glob

    docs = []
    for log in sorted(glob.glob(os.path.join(root, "*", "*_2k.log"))):
        system = os.path.basename(os.path.dirname(log))
        lines = Path(log).read_text("utf-8", "replace").splitlines()
        with open(log + "_structured.csv", encoding="utf-8", errors="replace") as f:
            events = [row["EventId"] for row in csv.DictReader(f)]
        for i, (line, event) in enumerate(list(zip(lines, events))[:per_system]):
            docs.append({"id": f"{system}/{i}", "text": line, "kind": "log", "group": f"{system}/{event}",
                         "edit": "", "split": "test"})
    return docs


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
    drops, stats = stage.decide(ds, len(docs))
    ids = table["id"].to_pylist()
    keeper_of = {}
    for ref in drops.to_arrow_refs():
        t = ray.get(ref)
        for row, keeper in zip(t["_row"].to_pylist(), t["detail"].to_pylist()):
            keeper_of[ids[row]] = keeper
    return keeper_of, stats


def run_curate(docs: list[dict], options: dict) -> dict[str, str]:
    """The user's path: a JSONL file through `curate` with near_dedupe; drops from the ledger."""
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
    return ledger_keepers(os.path.join(work, "out"))


def ledger_keepers(root: str) -> dict[str, str]:
    """Dropped id -> keeper id from a curate output's ledger (dedupe stages name their keeper in
    `detail`); a keeper that was itself dropped by a later stage leads on to its own keeper."""
    import pyarrow.parquet as pq

    if not os.path.isdir(os.path.join(root, "ledger")):
        return {}
    ledger = pq.read_table(os.path.join(root, "ledger"), columns=["id", "stage", "detail"])
    keeper_of = {i: k for i, s, k in zip(*(ledger[c].to_pylist() for c in ("id", "stage", "detail")))
                 if s.endswith("dedupe") and k}
    for i in list(keeper_of):
        seen = {i}
        while keeper_of[i] in keeper_of and keeper_of[i] not in seen:
            seen.add(keeper_of[i])
            keeper_of[i] = keeper_of[keeper_of[i]]
    return keeper_of


def fmt(name: str, m: dict, seconds: float | None = None) -> str:
    t = f" {seconds:6.1f}" if seconds is not None else ""
    return (f"{name:34s} {m['precision']:9.4f} {m['recall']:7.4f} {m['f1']:7.4f} {m['tp']:7d} {m['predicted']:9d}"
            f" {m['gold']:6d} {m['removed']:7d}{t}")


HEADER = (f"{'run':34s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'tp':>7s} {'predicted':>9s} {'gold':>6s} "
          f"{'removed':>7s}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval", nargs="?", help="labelled JSONL (from bench/dedupe_evalset.py)")
    ap.add_argument("--loghub", metavar="DIR", help="score log lines grouped by loghub's event templates instead")
    ap.add_argument("--lines", type=int, default=500, help="with --loghub: lines per system")
    ap.add_argument("--split", choices=["dev", "test"], help="only this split")
    ap.add_argument("--curve", action="store_true", help="sweep the threshold")
    ap.add_argument("--compare", action="store_true", help="verification modes and shingle sizes side by side")
    ap.add_argument("--curate", action="store_true", help="run through the curate job and score its ledger")
    ap.add_argument("--ledger", metavar="OUT", help="only score this curate output folder's ledger")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                    help="near_dedupe option for every run, e.g. --option threshold=0.75")
    ap.add_argument("--no-kind", action="store_true", help="drop the kind labels (every document `other`)")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    docs = loghub_docs(args.loghub, args.lines) if args.loghub else load(args.eval, args.split)
    if args.no_kind:
        docs = [{**d, "kind": None} for d in docs]
    base = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.option)}
    groups = len({d["group"] for d in docs})
    print(f"{len(docs)} documents, {groups} groups" + (f" ({args.split})" if args.split else ""))
    if args.ledger:
        print(HEADER)
        name = f"ledger of {os.path.basename(os.path.abspath(args.ledger))}"
        print(fmt(name, score(docs, ledger_keepers(args.ledger))))
        return 0

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
    if args.loghub:
        return 0
    print("\nrecall of (source, edited copy) pairs by edit:")
    for op, (hit, total) in sorted(recall.items()):
        print(f"  {op:18s} {hit:4d}/{total:<4d} {hit / total:.3f}")
    print("false-positive pairs by source:", false or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
