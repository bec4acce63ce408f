"""Ingest throughput of a curate job, beside the obvious one-process baseline.

    python bench/ingest.py                       # the default job, local-system
    python bench/ingest.py --job my-job.yaml --baseline-sample 500

Runs the job end to end with `python -m jobs.curate` (embedded Ray, all cores), then times a
one-process loop that does the same reading the way a person would script it (`man -l` per page,
`open().read().decode()` per file) on a sample of the same inputs, and extrapolates it to the whole
input. Prints a table; paste it into docs/benchmarks.md with the date and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.curate import build_job, resolve_job_file  # noqa: E402
from pipeline.config import load_job  # noqa: E402


def run_job(job_file: Path, output: Path, cpus: int | None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "jobs.curate", str(job_file), "--output", str(output), "--overwrite", "--quiet"]
    if cpus:
        cmd += ["--num-cpus", str(cpus)]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    wall = time.perf_counter() - started
    return wall, json.loads((output / "manifest.json").read_text())


def baseline_rate(job, sample: int, seed: int) -> dict[str, tuple[int, float]]:
    """Per source: (inputs in the whole plan, seconds per input in a one-process loop)."""
    rng = random.Random(seed)
    out = {}
    for source in job.sources:
        items = [item for unit in source.plan() for item in unit]
        picked = rng.sample(items, min(sample, len(items)))
        started = time.perf_counter()
        for item in picked:
            if source.kind == "man":
                subprocess.run(["man", "-l", "-P", "cat", item[2]], capture_output=True,
                               env={**os.environ, "MANWIDTH": "80"})
            else:
                try:
                    with open(item["path"], "rb") as f:
                        f.read().decode("utf-8", errors="replace")
                except OSError:
                    pass
        out[source.name] = (len(items), (time.perf_counter() - started) / max(1, len(picked)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="local-system")
    parser.add_argument("--cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--baseline-sample", type=int, default=400, help="inputs per source timed for the baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    job_file = resolve_job_file(args.job)
    config = load_job(job_file)
    cpus = args.cpus or os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        wall, manifest = run_job(job_file, Path(tmp) / "out", args.cpus)
    ingest = next(s for s in manifest["stages"] if s["name"] == "ingest")
    docs, mb = ingest["docs_in"], ingest["bytes_out"] / 1e6
    rates = baseline_rate(build_job(config, "unused"), args.baseline_sample, args.seed)
    base_wall = sum(n * per for n, per in rates.values())

    rows = [
        ("sigma curate (Ray, %d cores)" % cpus, wall),
        ("one-process loop (man -l, read+decode), extrapolated", base_wall),
    ]
    print(f"\njob {config.name}: {docs:,} inputs, {mb:,.1f} MB of text kept at ingest, "
          f"{manifest['totals']['kept']:,} documents kept")
    print("| run | wall s | inputs/s | MB/s | inputs/s per core | vs baseline |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds in rows:
        cores = cpus if name.startswith("sigma") else 1
        print(f"| {name} | {seconds:,.1f} | {docs / seconds:,.0f} | {mb / seconds:,.2f} | "
              f"{docs / seconds / cores:,.0f} | {base_wall / seconds:.2f}x |")
    for name, (n, per) in rates.items():
        print(f"baseline {name}: {n:,} inputs, {per * 1000:.1f} ms each (sample of {args.baseline_sample})")


if __name__ == "__main__":
    main()
