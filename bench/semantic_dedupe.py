"""Semantic dedupe: quality on a labelled set beside MinHash, and speed at growing sizes.

Quality (`bench/data/semantic_dedupe_set.jsonl.gz`, on which the defaults were chosen, and
`semantic_dedupe_set2.jsonl.gz`, held out: another seed, none of the first's groups; both built by
`bench/semantic_dedupe_set.py`): pairwise precision, recall and F1 of the stage's clusters
(keepers with the documents dropped in their name) at each cosine threshold, with the hard-token
guard and without it, beside `near_dedupe` (MinHash-LSH, Jaccard verified) at its thresholds on
the same documents; how many duplicate pairs semantic dedupe finds that MinHash misses, and how
many hard negatives it merges with the document they were chosen against. Then, at the default
threshold, what each guard category does: alone, left out of the default guard, and added to it.

Speed: documents/s of the whole stage on NL2Bash questions with their commands (each round of the
10,086 rows with a growing share of words redrawn, so larger corpora are new documents), with the
embedding (on Ray actors) beside k-means, the pairs and the rest.

    python bench/semantic_dedupe.py quality [--sets SET ...] [--models minilm minilm-static]
    python bench/semantic_dedupe.py speed --sizes 10000 100000 [--models minilm-static minilm]
    python bench/semantic_dedupe.py guard-cost [--docs 10000]   # CPU per document, one process
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dedupe_eval import load, pairs, run_stage, score  # noqa: E402

SETS = [ROOT / "bench" / "data" / f"semantic_dedupe_set{n}.jsonl.gz" for n in ("", "2")]
NL2BASH = ROOT.parent / "shared" / "data" / "nl2bash" / "dev.jsonl"
THRESHOLDS = (0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97)
MINHASH_THRESHOLDS = (0.3, 0.5, 0.8)


def table(docs: list[dict]):
    import pyarrow as pa

    return pa.table({"id": [d["id"] for d in docs], "text": pa.array([d["text"] for d in docs], pa.large_string()),
                     "kind": [d.get("kind") or "other" for d in docs],
                     "_unit": pa.array([0] * len(docs), pa.int32()), "_row": pa.array(range(len(docs)), pa.int64())})


def signals_on_actors(stage, docs: list[dict], batch_rows: int = 256) -> list:
    """The stage's signal on a pool of Ray actors (the model loaded once per actor), as in a curate
    job's map segment; returns the refs of the signal blocks."""
    import ray.data

    class Signal:
        def __init__(self):
            stage.setup()

        def __call__(self, batch):
            return stage.signal(batch).select(["id", "_unit", "_row", *stage.signal_columns()])

    t = table(docs)
    size = max(64, min(2048, t.num_rows // (4 * (stage.workers or 2))))  # several blocks an actor
    ds = ray.data.from_arrow([t.slice(i, size) for i in range(0, t.num_rows, size)])
    ds = ds.map_batches(Signal, batch_size=batch_rows, batch_format="pyarrow", concurrency=stage.workers or 2)
    return ds.materialize().to_arrow_refs()


def keepers_of(drops: list, ids: list[str]) -> dict[str, str]:
    import ray

    out = {}
    for ref in drops:
        t = ray.get(ref)
        for row, detail in zip(t["_row"].to_pylist(), t["detail"].to_pylist()):
            out[ids[row]] = detail.rsplit(" cosine=", 1)[0]
    return out


def pair_sets(docs: list[dict], keeper_of: dict[str, str]) -> set[tuple[str, str]]:
    """The predicted duplicate pairs that are also gold pairs."""
    cluster = collections.defaultdict(list)
    for d in docs:
        cluster[keeper_of.get(d["id"], d["id"])].append(d)
    found = set()
    for members in cluster.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if a["group"] == b["group"]:
                    found.add(tuple(sorted((a["id"], b["id"]))))
    return found


def negatives_merged(docs: list[dict], keeper_of: dict[str, str]) -> int:
    cluster = {d["id"]: keeper_of.get(d["id"], d["id"]) for d in docs}
    of_group = {}
    for d in docs:
        of_group.setdefault(d["group"], set()).add(cluster[d["id"]])
    return sum(1 for d in docs if "negative_of" in d and cluster[d["id"]] in of_group.get(d["negative_of"], ()))


def row(name: str, m: dict, extra: str = "") -> str:
    return (f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['tp']} | {m['predicted']} "
            f"| {extra} |")


def guard_variants(default: list[str]) -> list[tuple[str, list[str]]]:
    """Guards to compare at the default threshold: none, each category alone, the default without
    each of its categories, the default, and the default with each other category added."""
    from stages.dedupe.hard_tokens import CATEGORIES

    out = [("none (cosine only)", [])] + [(f"{c} alone", [c]) for c in CATEGORIES]
    out += [(f"default without {c}", [x for x in default if x != c]) for c in default]
    out += [("default", default)] + [(f"default + {c}", [*default, c]) for c in CATEGORIES if c not in default]
    return out


def quality_of_set(path: str, args) -> None:
    from stages.dedupe.semantic import SemanticDedupe

    docs = load(path, None)
    ids = [d["id"] for d in docs]
    gold = sum(pairs(n) for n in collections.Counter(d["group"] for d in docs).values())
    negatives = sum("negative_of" in d for d in docs)
    print(f"### {Path(path).name}: {len(docs)} documents, {gold} duplicate pairs, {negatives} hard negatives\n")
    lines = ["| method | precision | recall | F1 | true pairs | predicted pairs | missed by MinHash 0.8 found "
             "/ hard negatives merged |", "|---|---:|---:|---:|---:|---:|---|"]
    minhash_found = {}
    for t in MINHASH_THRESHOLDS:
        keeper_of, _ = run_stage(docs, {"threshold": t})
        minhash_found[t] = pair_sets(docs, keeper_of)
        lines.append(row(f"near_dedupe (MinHash) {t}", score(docs, keeper_of),
                         f"- / {negatives_merged(docs, keeper_of)} of {negatives}"))
    missed = minhash_found[0.8]
    default = SemanticDedupe()

    def measured(stage, blocks, name: str) -> tuple[str, dict]:
        drops, stats = stage.decide_blocks(blocks, len(docs))
        keeper_of = keepers_of(drops, ids)
        found = pair_sets(docs, keeper_of)
        return row(name, score(docs, keeper_of),
                   f"{len(found - missed)} / {negatives_merged(docs, keeper_of)} of {negatives}"), stats

    ablation = []
    for model in args.models:
        stage = SemanticDedupe(model=model, workers=args.num_cpus)
        started = time.time()
        blocks = signals_on_actors(stage, docs)
        embed_s = time.time() - started
        for guard in ([default.guard, []] if model == default.model else [default.guard]):
            stage.guard = guard
            for t in THRESHOLDS:
                stage.threshold = t
                mark = " (default)" if t == default.threshold and model == default.model and guard else ""
                lines.append(measured(stage, blocks, f"semantic_dedupe {model} {t} "
                                                     f"{'guard' if guard else 'cosine only'}{mark}")[0])
        if model == default.model:
            stage.threshold = default.threshold
            for name, guard in guard_variants(default.guard):
                stage.guard = guard
                line, s = measured(stage, blocks, name)
                ablation.append(line)
                if name == "default":
                    refused = ", ".join(f"{c} {n}" for c, n in s["guarded_by"].items())
                    print(f"guard at {default.threshold}: {s['pairs']} pairs kept, {s['guarded']} refused "
                          f"(differing in: {refused})", file=sys.stderr, flush=True)
        print(f"{model}: signals {embed_s:.1f} s ({len(docs) / embed_s:.0f} docs/s on {args.num_cpus} actors)",
              file=sys.stderr, flush=True)
    print("\n".join(lines))
    if ablation:
        print(f"\nThe guard's categories, {default.model} at {default.threshold}:\n")
        print("\n".join(["| guard | precision | recall | F1 | true pairs | predicted pairs | missed by MinHash 0.8 "
                         "found / hard negatives merged |", "|---|---:|---:|---:|---:|---:|---|", *ablation]))
    print()


def quality(args) -> int:
    import ray

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    for path in args.sets:
        quality_of_set(path, args)
    ray.shutdown()
    return 0


def speed_docs(n: int) -> list[dict]:
    """`n` NL2Bash questions with their commands; round r of the rows has r * 10% of the words
    redrawn from the set's vocabulary (seeded), so every round is new text."""
    rows = [json.loads(line) for line in NL2BASH.read_text().splitlines() if line.strip()]
    vocabulary = sorted({w for r in rows for w in r["nl"].split()})
    docs = []
    for i in range(n):
        r, k = rows[i % len(rows)], i // len(rows)
        words = r["nl"].split()
        if k:
            rng = random.Random(zlib.crc32(f"{i}".encode()))
            for j in rng.sample(range(len(words)), max(1, min(len(words), round(0.1 * k * len(words))))):
                words[j] = rng.choice(vocabulary)
        docs.append({"id": f"s{i}", "text": f"{' '.join(words)}\n\n    $ {r['cmd']}\n", "kind": "qa"})
    return docs


def speed(args) -> int:
    import ray

    from stages.dedupe.semantic import SemanticDedupe

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    lines = ["| documents | model | embed s | decide s | of which k-means s | docs/s (whole stage) "
             "| embed ms/doc | decide ms/doc | clusters | largest cluster | pairs compared | removed |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, model in [(n, m) for m in args.models for n in args.sizes]:
        docs = speed_docs(n)
        stage = SemanticDedupe(model=model, workers=args.num_cpus)
        started = time.time()
        blocks = signals_on_actors(stage, docs)
        signed = time.time()
        drops, s = stage.decide_blocks(blocks, n)
        removed = sum(ray.get(ray.remote(lambda t: t.num_rows).remote(ref)) for ref in drops)
        done = time.time()
        embed_s, decide_s = signed - started, done - signed
        lines.append(f"| {n:,} | {model} | {embed_s:.1f} | {decide_s:.1f} | {s['kmeans_s']:.1f} "
                     f"| {n / (done - started):,.0f} | {embed_s / n * 1e3:.2f} | {decide_s / n * 1e3:.3f} "
                     f"| {s['clusters']} | {s['largest_cluster']:,} | {s['compared']:,} | {removed:,} |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    ray.shutdown()
    return 0


def guard_cost(args) -> int:
    """CPU time per document of the guard's hard-token hashes beside the static model's encoding
    of the same texts (process time, so other jobs on the machine count little)."""
    from stages.dedupe.embed import Encoder
    from stages.dedupe.hard_tokens import hashes

    texts = [d["text"][:2000] for d in speed_docs(args.docs)]
    started = time.process_time()
    for text in texts:
        hashes(text)
    guard_s = time.process_time() - started
    encoder = Encoder("minilm-static")
    encoder.encode(texts[:8])
    started = time.process_time()
    encoder.encode(texts)
    static_s = time.process_time() - started
    print("| documents | hard-token hashes ms/doc | minilm-static encode ms/doc | ratio |\n|---:|---:|---:|---:|")
    print(f"| {len(texts):,} | {guard_s / len(texts) * 1e3:.3f} | {static_s / len(texts) * 1e3:.3f} "
          f"| {guard_s / static_s:.2f} |")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality", help="precision, recall and F1 on the labelled set, beside MinHash")
    q.add_argument("--sets", nargs="+", default=[str(p) for p in SETS])
    q.add_argument("--models", nargs="+", default=["minilm", "minilm-static"])
    s = sub.add_parser("speed", help="documents/s of the stage at growing sizes")
    s.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    s.add_argument("--models", nargs="+", default=["minilm-static"])
    for p in (q, s):
        p.add_argument("--num-cpus", type=int, default=2)
    g = sub.add_parser("guard-cost", help="CPU per document of the guard's hashes beside the static model")
    g.add_argument("--docs", type=int, default=10_000)
    args = ap.parse_args()
    return {"quality": quality, "speed": speed, "guard-cost": guard_cost}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
