"""Throughput of each quality and safety stage, in documents per second on one core, on real
system data, with DataTrove's filters timed on the same documents in the same run where they exist.

    python bench/quality.py --peer-python PEER_VENV/bin/python --repeat 3

Corpus: man pages (rendered with groff), /usr/share/doc files, /etc configs and the loghub logs,
read with the project's own sources, at most `--per-source` documents each. Each stage runs
`process` (signal and decision) in batches in this one process; the median of `--repeat` runs is
reported. DataTrove's filters (GopherQuality, GopherRepetition, C4Quality, FineWebQuality) run
under their own venv through bench/peer_datatrove_filters.py on the same JSONL. The redaction
peer (detect-secrets) is timed in bench/redaction.py.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.ingest.files import FilesSource  # noqa: E402
from stages.ingest.man import ManSource  # noqa: E402
from stages.registry import STAGES  # noqa: E402

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
NL2BASH = ROOT.parent / "shared" / "data" / "nl2bash" / "dev.jsonl"


def collect(source, limit: int, seed: int = 0) -> list[dict]:
    units = source.plan()
    random.Random(seed).shuffle(units)
    rows: list[dict] = []
    for unit in units:
        for result in source.read(unit):
            rows += result.kept.to_pylist()
        if len(rows) >= limit:
            break
    return rows[:limit]


def corpus(per_source: int) -> pa.Table:
    rows = collect(ManSource("man", exclude=["gcloud*"], unit_pages=50), per_source)
    rows += collect(FilesSource("doc", ["/usr/share/doc"], unit_files=100), per_source)
    rows += collect(FilesSource("etc", ["/etc"], unit_files=100), per_source)
    rows += collect(FilesSource("logs", [str(LOGHUB)], include=["*_2k.log"]), per_source)
    return pa.Table.from_pylist(rows)


def stage_list(model: str | None) -> list[tuple[str, dict]]:
    out = [("redact", {}), ("basic_filter", {}), ("system_checks", {}), ("language_filter", {}),
           ("gopher_quality", {"kinds": None}), ("gopher_repetition", {"kinds": None}),
           ("c4_filter", {"kinds": None}), ("fineweb_filter", {"kinds": None})]
    if NL2BASH.exists():
        out.append(("decontaminate", {"eval_sets": [str(NL2BASH)]}))
    if model:
        out.append(("domain_classifier", {"model": model}))
    return out


def time_stage(name: str, options: dict, table: pa.Table, repeat: int) -> float:
    stage = STAGES[name](**options)
    stage.setup()
    size = stage.resources.batch_size
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for start in range(0, table.num_rows, size):
            stage.process(table.slice(start, size))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-source", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-python", help="python of a venv with datatrove[processing] installed")
    parser.add_argument("--model", help="a trained domain classifier folder, to time domain_classifier")
    parser.add_argument("--stages", nargs="+", help="time only these stages")
    args = parser.parse_args()
    table = corpus(args.per_source)
    mb = sum(len(t.encode()) for t in table["text"].to_pylist()) / 1e6
    kinds = {k: v for k, v in sorted(__import__("collections").Counter(table["kind"].to_pylist()).items())}
    print(f"corpus: {table.num_rows} documents, {mb:.1f} MB, kinds {kinds}")
    peer = {}
    if args.peer_python:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for row in table.select(["id", "text"]).to_pylist():
                f.write(json.dumps(row) + "\n")
        out = subprocess.run([args.peer_python, str(ROOT / "bench" / "peer_datatrove_filters.py"), f.name,
                              "--repeat", str(args.repeat)], capture_output=True, text=True, check=True).stdout
        peer = {r["stage"]: r for r in map(json.loads, out.strip().splitlines())}
        Path(f.name).unlink()
    print(f"{'stage':20s} {'docs/s/core':>12s} {'MB/s/core':>10s} {'datatrove docs/s':>17s} {'ratio':>7s}")
    for name, options in stage_list(args.model):
        if args.stages and name not in args.stages:
            continue
        seconds = time_stage(name, options, table, args.repeat)
        rate = table.num_rows / seconds
        line = f"{name:20s} {rate:12.0f} {mb / seconds:10.2f}"
        if name in peer:
            peer_rate = peer[name]["docs"] / peer[name]["seconds"]
            line += f" {peer_rate:17.0f} {rate / peer_rate:6.1f}x"
        print(line)


if __name__ == "__main__":
    main()
