"""The whole curate job on growing corpora: time per document and peak memory from 10k to 1M+
documents, on this machine's embedded Ray.

    python bench/scale.py                                  # 10k, 100k, 300k, 1M documents
    python bench/scale.py --sizes 100000 1000000 --stages redact basic_filter exact_dedupe near_dedupe

The corpus is `bench/corpus.py`'s: real system text (Loghub logs, NL2Bash pairs, /usr/share/doc,
/etc) cut into documents, mutated at a 2% word-edit rate, 5% exact copies; one corpus per size,
with the same seed, so a bigger corpus has the same mix. The job is the quick form (`sigma curate
--input DIR`) with the default stages: redaction, the basic filter, exact and near dedupe. Each
run is its own process tree (the driver, its embedded Ray and every worker), sampled from /proc:
wall and CPU time, peak PSS summed over the tree, the largest single process's private memory
(which counts object-store pages only that process maps), and the largest heap (`RssAnon`: what
a process allocated itself, without the object store's shared memory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.corpus import write_corpus  # noqa: E402
from bench.dedupe import measure  # noqa: E402
from jobs.curate import DEFAULT_STAGES  # noqa: E402


def run_size(size: int, args) -> dict:
    corpus = args.work / f"corpus-{size}"
    if not (corpus / "_done").exists():
        shutil.rmtree(corpus, ignore_errors=True)
        t = time.perf_counter()
        write_corpus(size, corpus, shards=max(8, size // 50_000))
        (corpus / "_done").write_text(str(size))
        print(f"corpus of {size:,}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    job = args.work / f"job-{size}.json"
    job.write_text(json.dumps({"name": f"scale-{size}", "inputs": [{"type": "jsonl", "paths": [str(corpus)]}],
                               "stages": args.stages, "writer": {"rejects": "none"},
                               "ray": {"num_cpus": args.num_cpus}}))
    out = args.work / f"out-{size}"
    run = measure([sys.executable, "-m", "jobs.curate", str(job), "--output", str(out), "--overwrite", "--quiet"],
                  log=args.work / f"log-{size}.txt")
    if run["rc"] != 0:
        sys.exit(f"the job on {size:,} documents failed (exit {run['rc']}): see {args.work / f'log-{size}.txt'}")
    manifest = json.loads((out / "manifest.json").read_text())
    input_mb = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / 1e6
    output_mb = sum(f["bytes"] for f in manifest["files"]) / 1e6
    return {"size": size, "input_mb": input_mb, "output_mb": output_mb, **run, "totals": manifest["totals"],
            "units": manifest["units"]}


def table(rows: list[dict]) -> str:
    lines = ["| documents | JSONL MB | wall s | µs per document | documents/s | CPU s | kept | near dups | exact dups "
             "| peak PSS MB (tree) | largest process: private (PSS) MB | largest heap (RssAnon) MB | Parquet MB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        drops = r["totals"]["dropped_by_reason"]
        lines.append(f"| {r['size']:,} | {r['input_mb']:,.0f} | {r['wall_s']:.1f} | {r['wall_s'] / r['size'] * 1e6:,.0f} "
                     f"| {r['size'] / r['wall_s']:,.0f} | {r['cpu_s']:.0f} | {r['totals']['kept']:,} "
                     f"| {drops.get('near_duplicate', 0):,} | {drops.get('exact_duplicate', 0):,} "
                     f"| {r['tree_pss_mb']:,.0f} | {r['max_proc_uss_mb']:,.0f} ({r['max_proc_pss_mb']:,.0f}) "
                     f"| {r['max_proc_anon_mb']:,.0f} | {r['output_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--stages", nargs="+", default=list(DEFAULT_STAGES))
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sigma-bench-scale")
    parser.add_argument("--keep", action="store_true", help="keep the corpora and outputs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        rows.append(run_size(size, args))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        (args.work / f"scale-{size}.json").write_text(json.dumps(rows[-1], indent=1))
        if not args.keep:
            shutil.rmtree(args.work / f"out-{size}", ignore_errors=True)
    print(f"\nstages: {', '.join(args.stages)}; {args.num_cpus} CPUs; load {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))


if __name__ == "__main__":
    main()
