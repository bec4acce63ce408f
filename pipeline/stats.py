"""Statistics of a curate output, from its shards and manifest in one streaming pass."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest import read_manifest

BATCH_ROWS = 8192


def _length_bucket(chars: int) -> int:
    """Powers of two: bucket k holds lengths in [2^k, 2^(k+1))."""
    return 0 if chars < 1 else int(math.log2(chars))


def compute_stats(root: str | Path) -> dict:
    root = Path(root)
    manifest = read_manifest(root)
    by_source = defaultdict(lambda: [0, 0])
    by_kind = defaultdict(lambda: [0, 0])
    histogram = defaultdict(int)
    shards = []
    for record in manifest["files"]:
        path = root / record["path"]
        f = pq.ParquetFile(path)
        rows = nbytes = 0
        for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=["source", "kind", "text"]):
            sizes = pc.binary_length(batch.column("text").cast(pa.large_binary())).to_numpy(zero_copy_only=False)
            chars = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
            for source, kind, size, n in zip(batch.column("source").to_pylist(), batch.column("kind").to_pylist(),
                                             sizes, chars):
                by_source[source][0] += 1
                by_source[source][1] += int(size)
                by_kind[kind][0] += 1
                by_kind[kind][1] += int(size)
                histogram[_length_bucket(int(n))] += 1
            rows += batch.num_rows
            nbytes += int(sizes.sum())
        shards.append({"path": record["path"], "rows": rows, "text_bytes": nbytes, "file_bytes": record["bytes"]})
    ledger_rows = sum(pq.ParquetFile(root / r["path"]).metadata.num_rows for r in manifest["ledger"])
    kept = sum(s["rows"] for s in shards)
    totals = manifest["totals"]
    return {
        "output": str(root),
        "name": manifest.get("name"),
        "config_hash": manifest.get("config_hash"),
        "documents": kept,
        "text_bytes": sum(s["text_bytes"] for s in shards),
        "by_source": {k: {"documents": v[0], "bytes": v[1]} for k, v in sorted(by_source.items())},
        "by_kind": {k: {"documents": v[0], "bytes": v[1]} for k, v in sorted(by_kind.items())},
        "shards": shards,
        "stages": manifest["stages"],
        "balance": {
            "input": totals["input"], "kept": kept, "dropped": totals["dropped"], "ledger_rows": ledger_rows,
            "balanced": totals["input"] == kept + totals["dropped"] and ledger_rows == totals["dropped"],
        },
        "dropped_by_reason": totals["dropped_by_reason"],
        "length_histogram": [{"min_chars": 2 ** k if k else 0, "max_chars": 2 ** (k + 1) - 1, "documents": n}
                             for k, n in sorted(histogram.items())],
        "seconds": manifest.get("seconds"),
    }


def render_stats(stats: dict, console) -> None:
    from rich.table import Table

    def table(title: str, *columns: str) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold")
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right")
        return t

    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f}"

    for title, key in (("documents by source", "by_source"), ("documents by kind", "by_kind")):
        t = table(title, key[3:], "documents", "MB")
        for name, v in stats[key].items():
            t.add_row(str(name), f"{v['documents']:,}", mb(v["bytes"]))
        t.add_row("[bold]total", f"[bold]{stats['documents']:,}", f"[bold]{mb(stats['text_bytes'])}")
        console.print(t)
    t = table("stages", "stage", "in", "out", "dropped", "reasons")
    for s in stats["stages"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(s["dropped"].items(), key=lambda x: -x[1]))
        t.add_row(s["name"], f"{s['docs_in']:,}", f"{s['docs_out']:,}",
                  f"{sum(s['dropped'].values()):,}", reasons)
    console.print(t)
    shards = stats["shards"]
    t = table(f"shards ({len(shards)})", "shard", "documents", "MB text", "MB file")
    for s in shards[:10]:
        t.add_row(s["path"], f"{s['rows']:,}", mb(s["text_bytes"]), mb(s["file_bytes"]))
    if len(shards) > 10:
        t.add_row(f"... {len(shards) - 10} more", "", "", "")
    console.print(t)
    hist = stats["length_histogram"]
    if hist:
        t = table("length (characters)", "range", "documents", "")
        top = max(h["documents"] for h in hist)
        for h in hist:
            t.add_row(f"{h['min_chars']:,}-{h['max_chars']:,}", f"{h['documents']:,}",
                      "[cyan]" + "█" * max(1, round(30 * h["documents"] / top)))
        console.print(t)
    b = stats["balance"]
    mark = "[green]balanced[/green]" if b["balanced"] else "[red]NOT BALANCED[/red]"
    console.print(f"ledger: input {b['input']:,} = kept {b['kept']:,} + dropped {b['dropped']:,}  {mark}"
                  f"  (ledger rows {b['ledger_rows']:,})")
