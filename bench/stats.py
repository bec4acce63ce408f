"""The statistics pass on a large curate output, beside loading it into pandas.

    python bench/stats.py --docs 1000000

Builds a corpus with bench/corpus.py (cached), curates it with `sigma curate` (cached), then
times `compute_stats` (streaming, Arrow compute) and the pandas way (read every shard into one
DataFrame, then group) in separate processes, with their peak memory. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PANDAS = """
import sys, time, pandas as pd
t = time.perf_counter()
df = pd.read_parquet(sys.argv[1] + "/shards", columns=["source", "kind", "text"])
df["bytes"] = df.text.str.encode("utf-8").str.len()
df["words"] = df.text.str.split().str.len()
g = df.groupby(["source", "kind"]).agg(documents=("bytes", "size"), bytes=("bytes", "sum"), words=("words", "sum"))
import resource
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""

SIGMA = """
import sys, time
from pipeline.stats import compute_stats
t = time.perf_counter()
s = compute_stats(sys.argv[1])
import resource
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def timed(code: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a fresh process running `code`."""
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    seconds, peak = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sigma-bench-stats")
    parser.add_argument("--skip-pandas", action="store_true", help="the pandas peer needs the corpus in memory")
    args = parser.parse_args()
    from bench.corpus import write_corpus

    corpus, out = args.work / f"corpus-{args.docs}", args.work / f"out-{args.docs}"
    if not corpus.exists():
        write_corpus(args.docs, corpus)
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "jobs.curate", "--input", str(corpus), "--output", str(out), "--quiet"],
                       cwd=ROOT, check=True)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [("sigma stats (streaming, Arrow compute)", *timed(SIGMA, out))]
    if not args.skip_pandas:
        rows.append(("pandas: read_parquet + groupby", *timed(PANDAS, out)))
    kept = manifest["totals"]["kept"]
    mb = sum(f["bytes"] for f in manifest["files"]) / 1e6
    print(f"\n{kept:,} documents in {len(manifest['files'])} shards ({mb:,.0f} MB of zstd Parquet)")
    print("| run | seconds | documents/s | peak RSS MB |")
    print("|---|---:|---:|---:|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:,.1f} | {kept / seconds:,.0f} | {peak:,.0f} |")


if __name__ == "__main__":
    main()
