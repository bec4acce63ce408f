"""Statistics of a curate output, computed from its shards, ledger and manifest in one streaming
pass with Arrow compute (no corpus-sized frame in memory). Which columns are scores or tallies,
and which reasons name a kept duplicate, is read from what the stages declared in the manifest."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.audit import Audit, render_audit
from pipeline.manifest import read_manifest

BATCH_ROWS = 8192
LENGTH_BUCKETS = 32  # powers of two of characters
SCORE_BINS = 20
COUNT_BINS = 32  # an integer score (a count): bins 0, 1, 2-3, 4-7, ..., from 2^30


def _numeric(field: pa.Field) -> bool:
    return pa.types.is_floating(field.type) or pa.types.is_integer(field.type)


def score_edges(high: float, integer: bool) -> list[float]:
    if integer:
        return [0.0] + [float(2 ** k) for k in range(COUNT_BINS)]  # COUNT_BINS + 1 edges
    return np.linspace(0.0, high, SCORE_BINS + 1).round(6).tolist()


class _Scores:
    """Histograms of score columns over [0, high] (powers of two for counts), with each column's
    range, merged batch by batch."""

    def __init__(self):
        self.counts: dict[str, np.ndarray] = {}
        self.edges: dict[str, list[float]] = {}
        self.log2: set[str] = set()  # integer columns (counts), binned by powers of two
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def add(self, name: str, values: pa.Array, high: float) -> None:
        v = values.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return
        if pa.types.is_integer(values.type):
            self.log2.add(name)
        edges = self.edges.setdefault(name, score_edges(high, name in self.log2))
        self._range(name, float(v.min()), float(v.max()))
        hist, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
        self.counts[name] = self.counts.get(name, 0) + hist

    def _range(self, name: str, low: float, high: float) -> None:
        self.low[name] = min(self.low.get(name, low), low)
        self.high[name] = max(self.high.get(name, high), high)

    def merge(self, other: _Scores) -> None:
        for name, counts in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + counts
            self.edges[name] = other.edges[name]
            self.log2 |= other.log2 & {name}
            self._range(name, other.low[name], other.high[name])

    def to_dict(self, thresholds: list[dict]) -> dict:
        out = {}
        for name, counts in sorted(self.counts.items()):
            lines = [t for t in thresholds if t["column"] == name]
            edges = self.edges[name]
            log2 = name in self.log2
            if log2:  # up to the bin of the largest value or threshold
                top = max([self.high[name], *(t["value"] for t in lines)])
                n = min(len(counts), int(np.searchsorted(edges, top, side="right")))
                counts, edges = counts[:n], edges[:n + 1]
            out[name] = {"edges": edges, "counts": counts.tolist(), "scale": "log2" if log2 else "linear",
                         "min": self.low[name], "max": self.high[name], "thresholds": lines}
        return out


_SPACE = np.zeros(256, bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True


def text_measures(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bytes, characters and whitespace-separated words of each string. Words are counted as word
    starts summed per document with numpy (`reduceat` over the string bytes; regular-expression
    counting is about ten times slower on a large corpus)."""
    arr = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    arr = arr.cast(pa.large_string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n + 1]
    nbytes = offsets[1:] - offsets[:-1]
    chars = pc.utf8_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if n and arr.buffers()[2] is not None else None
    if data is None or offsets[-1] == 0:
        return nbytes, chars, np.zeros(n, np.int64)
    word = ~_SPACE[data[: offsets[-1]]]
    start = word.copy()
    start[1:] &= ~word[:-1]
    heads = offsets[:-1][nbytes > 0]
    start[heads] = word[heads]  # a word at a document's first byte starts there, whatever came before
    words = np.add.reduceat(start.view(np.uint8), np.minimum(offsets[:-1], len(start) - 1), dtype=np.int64)
    words[nbytes == 0] = 0
    return nbytes, chars, words


class _Partial:
    """What one shard adds up to; partials merge, so shards are read in parallel threads."""

    def __init__(self):
        self.groups: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(4, np.int64))  # docs, bytes, words, tokens
        self.lengths: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(LENGTH_BUCKETS, np.int64))
        self.scores, self.counts, self.audit = _Scores(), Counter(), Audit()

    def add(self, batch: pa.RecordBatch, scores: dict[str, float], tallies: dict[str, tuple[str, str]],
            tokenizer) -> int:
        text = batch.column("text")
        size, chars, words = text_measures(text)
        tokens = (pa.array([len(e.ids) for e in tokenizer.encode_batch(text.to_pylist())], pa.int64())
                  if tokenizer is not None else pa.nulls(batch.num_rows, pa.int64()))
        table = pa.table({"source": batch.column("source"), "kind": batch.column("kind"), "bytes": size,
                          "words": words, "tokens": tokens})
        for a in table.group_by(["source", "kind"]).aggregate(
                [("bytes", "count"), ("bytes", "sum"), ("words", "sum"), ("tokens", "sum")]).to_pylist():
            self.groups[(a["source"], a["kind"])] += [a["bytes_count"], a["bytes_sum"] or 0, a["words_sum"] or 0,
                                                      a["tokens_sum"] or 0]
        kinds = batch.column("kind").to_numpy(zero_copy_only=False)
        buckets = np.minimum(np.log2(np.maximum(chars, 1)).astype(np.int64), LENGTH_BUCKETS - 1)
        for kind in set(kinds.tolist()):
            self.lengths[kind] += np.bincount(buckets[kinds == kind], minlength=LENGTH_BUCKETS)
        for name, high in scores.items():
            self.scores.add(name, batch.column(name), high)
        for name, key in tallies.items():
            self.counts[key] += pc.sum(batch.column(name)).as_py() or 0
        self.audit.add(batch)
        return int(size.sum())

    def merge(self, other: _Partial) -> None:
        for key, v in other.groups.items():
            self.groups[key] += v
        for key, v in other.lengths.items():
            self.lengths[key] += v
        self.scores.merge(other.scores)
        self.counts.update(other.counts)
        self.audit.merge(other.audit)


def _shard_stats(root: Path, record: dict, declared: dict, tokenizer) -> tuple[_Partial, dict]:
    f = pq.ParquetFile(root / record["path"])
    numeric = {f.name: f for f in f.schema_arrow if _numeric(f)}
    scores = {s["column"]: s["high"] for s in declared.get("scores", []) if s["column"] in numeric}
    tallies = {name: (t["stage"], name[len(t["prefix"]):]) for t in declared.get("tallies", [])
               for name, field in numeric.items() if name.startswith(t["prefix"]) and pa.types.is_integer(field.type)}
    part, rows, nbytes = _Partial(), 0, 0
    for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=["id", "uri", "source", "kind", "text", *scores, *tallies]):
        nbytes += part.add(batch, scores, tallies, tokenizer)
        rows += batch.num_rows
    return part, {"path": record["path"], "rows": rows, "text_bytes": nbytes, "file_bytes": record["bytes"]}


def compute_stats(root: str | Path, tokenizer=None, threads: int | None = None) -> dict:
    """`tokenizer`: a Hugging Face `tokenizers.Tokenizer` to count tokens; words are always counted.
    Shards are read by `threads` threads (default: one per CPU); Arrow and numpy release the GIL."""
    root = Path(root)
    manifest = read_manifest(root)
    thresholds = manifest.get("thresholds", [])
    declared = manifest.get("declared", {})
    total = _Partial()
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda r: _shard_stats(root, r, declared, tokenizer), manifest["files"]))
    shards = []
    for part, shard in results:
        total.merge(part)
        shards.append(shard)
    groups, lengths, scores, counts = total.groups, total.lengths, total.scores, total.counts
    duplicate_reasons = sorted({r["reason"] for r in declared.get("reasons", []) if r["duplicate"]})
    clusters, ledger_rows = _duplicate_clusters(root, manifest, duplicate_reasons)
    kept = sum(s["rows"] for s in shards)
    totals = manifest["totals"]

    def by(index: int) -> dict:
        out = defaultdict(lambda: np.zeros(4, np.int64))
        for key, v in groups.items():
            out[key[index]] += v
        return {k: _group_dict(v, tokenizer) for k, v in sorted(out.items(), key=lambda kv: str(kv[0]))}

    all_lengths = sum(lengths.values(), np.zeros(LENGTH_BUCKETS, np.int64))
    return {
        "output": str(root),
        "name": manifest.get("name"),
        "config_hash": manifest.get("config_hash"),
        "documents": kept,
        "text_bytes": int(sum(v[1] for v in groups.values())),
        "words": int(sum(v[2] for v in groups.values())),
        "tokens": int(sum(v[3] for v in groups.values())) if tokenizer is not None else None,
        "by_source": by(0),
        "by_kind": by(1),
        "shards": shards,
        "stages": manifest["stages"],
        "balance": {
            "input": totals["input"], "kept": kept, "dropped": totals["dropped"], "ledger_rows": ledger_rows,
            "balanced": totals["input"] == kept + totals["dropped"] and ledger_rows == totals["dropped"],
        },
        "dropped_by_reason": totals["dropped_by_reason"],
        "length_histogram": _histogram(all_lengths),
        "length_histogram_by_kind": {k: _histogram(v) for k, v in sorted(lengths.items(), key=lambda kv: str(kv[0]))},
        "scores": scores.to_dict(thresholds),
        "tallies": {stage: dict(sorted((k, v) for (st, k), v in counts.items() if st == stage))
                    for stage in sorted({st for st, _ in counts})},
        "duplicate_clusters": clusters,
        "audit": total.audit.to_dict(),
        "seconds": manifest.get("seconds"),
    }


def _group_dict(v: np.ndarray, tokenizer) -> dict:
    out = {"documents": int(v[0]), "bytes": int(v[1]), "words": int(v[2])}
    if tokenizer is not None:
        out["tokens"] = int(v[3])
    return out


def _histogram(counts: np.ndarray) -> list[dict]:
    return [{"min_chars": 2 ** k if k else 0, "max_chars": 2 ** (k + 1) - 1, "documents": int(n)}
            for k, n in enumerate(counts) if n]


def _duplicate_clusters(root: Path, manifest: dict, reasons: list[str]) -> tuple[dict[str, list[dict]], int]:
    """For each duplicate reason: sizes of its clusters (the keeper, named first in the detail,
    plus the documents dropped for it), from the ledger; and the ledger's row count."""
    per_keeper: Counter = Counter()
    rows = 0
    for record in manifest["ledger"]:
        f = pq.ParquetFile(root / record["path"])
        rows += f.metadata.num_rows
        if not reasons:
            continue
        for batch in f.iter_batches(batch_size=BATCH_ROWS * 8, columns=["reason", "detail"]):
            dup = batch.filter(pc.is_in(batch.column("reason"), value_set=pa.array(reasons, pa.string())))
            per_keeper.update((r, (d or "").split(" ", 1)[0])
                              for r, d in zip(dup.column("reason").to_pylist(), dup.column("detail").to_pylist()))
    sizes: dict[str, Counter] = defaultdict(Counter)
    for (reason, _), n in per_keeper.items():
        sizes[reason][n + 1] += 1
    return {r: [{"size": s, "clusters": n} for s, n in sorted(c.items())] for r, c in sorted(sizes.items())}, rows


def render_stats(stats: dict, console) -> None:
    from rich.table import Table

    def table(title: str, *columns: str) -> Table:
        t = Table(title=title, title_justify="left", title_style="bold")
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right")
        return t

    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f}"

    tokens = stats["tokens"] is not None
    for title, key in (("documents by source", "by_source"), ("documents by kind", "by_kind")):
        t = table(title, key[3:], "documents", "MB", "words", *(["tokens"] if tokens else []))
        for name, v in stats[key].items():
            t.add_row(str(name), f"{v['documents']:,}", mb(v["bytes"]), f"{v['words']:,}",
                      *([f"{v['tokens']:,}"] if tokens else []))
        t.add_row("[bold]total", f"[bold]{stats['documents']:,}", f"[bold]{mb(stats['text_bytes'])}",
                  f"[bold]{stats['words']:,}", *([f"[bold]{stats['tokens']:,}"] if tokens else []))
        console.print(t)
    t = table("stages", "stage", "in", "out", "dropped", "reasons")
    for s in stats["stages"]:
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(s["dropped"].items(), key=lambda x: -x[1]))
        t.add_row(s["name"], f"{s['docs_in']:,}", f"{s['docs_out']:,}", f"{sum(s['dropped'].values()):,}", reasons)
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
    for stage, tallies in stats["tallies"].items():
        t = table(f"{stage}: totals", "column", "count")
        for name, n in tallies.items():
            t.add_row(name, f"{n:,}")
        console.print(t)
    render_audit(stats["audit"], console)
    b = stats["balance"]
    mark = "[green]balanced[/green]" if b["balanced"] else "[red]NOT BALANCED[/red]"
    console.print(f"ledger: input {b['input']:,} = kept {b['kept']:,} + dropped {b['dropped']:,}  {mark}"
                  f"  (ledger rows {b['ledger_rows']:,})")
