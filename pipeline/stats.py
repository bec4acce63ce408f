"""Statistics of a curate output, computed from its shards, ledger and manifest in one streaming
pass with Arrow compute (no corpus-sized frame in memory)."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest import read_manifest

BATCH_ROWS = 8192
LENGTH_BUCKETS = 32  # powers of two of characters
SCORE_BINS = 20
SCORE_PREFIXES = ("quality.", "domain.", "lang.", "stats.printable")
COUNT_PREFIXES = ("redact.",)


def _numeric(field: pa.Field) -> bool:
    return pa.types.is_floating(field.type) or pa.types.is_integer(field.type)


def _columns(schema: pa.Schema, prefixes: tuple[str, ...], floating: bool) -> list[str]:
    return [f.name for f in schema if f.name.startswith(prefixes) and _numeric(f)
            and pa.types.is_floating(f.type) == floating]


class _Scores:
    """Histograms of score columns over [0, 1] (or their running range), merged batch by batch."""

    def __init__(self):
        self.counts: dict[str, np.ndarray] = {}
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def add(self, name: str, values: pa.Array) -> None:
        v = values.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            return
        self.low[name] = min(self.low.get(name, 0.0), float(v.min()))
        self.high[name] = max(self.high.get(name, 1.0), float(v.max()))
        hist, _ = np.histogram(np.clip(v, 0.0, 1.0), bins=SCORE_BINS, range=(0.0, 1.0))
        self.counts[name] = self.counts.get(name, 0) + hist

    def merge(self, other: _Scores) -> None:
        for name, counts in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + counts
            self.low[name] = min(self.low.get(name, 0.0), other.low[name])
            self.high[name] = max(self.high.get(name, 1.0), other.high[name])

    def to_dict(self, thresholds: list[dict]) -> dict:
        edges = np.linspace(0.0, 1.0, SCORE_BINS + 1).round(4).tolist()
        return {name: {"edges": edges, "counts": counts.tolist(), "min": self.low[name], "max": self.high[name],
                       "thresholds": [t for t in thresholds if t["column"] == name]}
                for name, counts in sorted(self.counts.items())}


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
        self.scores, self.counts = _Scores(), Counter()

    def add(self, batch: pa.RecordBatch, score_cols: list[str], count_cols: list[str], tokenizer) -> int:
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
        for name in score_cols:
            self.scores.add(name, batch.column(name))
        for name in count_cols:
            self.counts[name[len("redact."):]] += pc.sum(batch.column(name)).as_py() or 0
        return int(size.sum())

    def merge(self, other: _Partial) -> None:
        for key, v in other.groups.items():
            self.groups[key] += v
        for key, v in other.lengths.items():
            self.lengths[key] += v
        self.scores.merge(other.scores)
        self.counts.update(other.counts)


def _shard_stats(root: Path, record: dict, tokenizer) -> tuple[_Partial, dict]:
    f = pq.ParquetFile(root / record["path"])
    score_cols = _columns(f.schema_arrow, SCORE_PREFIXES, True)
    count_cols = _columns(f.schema_arrow, COUNT_PREFIXES, False)
    part, rows, nbytes = _Partial(), 0, 0
    for batch in f.iter_batches(batch_size=BATCH_ROWS, columns=["source", "kind", "text", *score_cols, *count_cols]):
        nbytes += part.add(batch, score_cols, count_cols, tokenizer)
        rows += batch.num_rows
    return part, {"path": record["path"], "rows": rows, "text_bytes": nbytes, "file_bytes": record["bytes"]}


def compute_stats(root: str | Path, tokenizer=None, threads: int | None = None) -> dict:
    """`tokenizer`: a Hugging Face `tokenizers.Tokenizer` to count tokens; words are always counted.
    Shards are read by `threads` threads (default: one per CPU); Arrow and numpy release the GIL."""
    root = Path(root)
    manifest = read_manifest(root)
    thresholds = manifest.get("thresholds", [])
    total = _Partial()
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda r: _shard_stats(root, r, tokenizer), manifest["files"]))
    shards = []
    for part, shard in results:
        total.merge(part)
        shards.append(shard)
    groups, lengths, scores, counts = total.groups, total.lengths, total.scores, total.counts
    clusters, ledger_rows = _near_duplicate_clusters(root, manifest)
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
        "redactions": dict(sorted(counts.items())),
        "near_duplicate_clusters": clusters,
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


def _near_duplicate_clusters(root: Path, manifest: dict) -> tuple[list[dict], int]:
    """Sizes of near-duplicate clusters (the keeper plus the documents dropped for it), from the ledger."""
    per_keeper: Counter = Counter()
    rows = 0
    for record in manifest["ledger"]:
        f = pq.ParquetFile(root / record["path"])
        rows += f.metadata.num_rows
        for batch in f.iter_batches(batch_size=BATCH_ROWS * 8, columns=["reason", "detail"]):
            near = batch.filter(pc.equal(batch.column("reason"), "near_duplicate"))
            per_keeper.update(near.column("detail").to_pylist())
    sizes = Counter(n + 1 for n in per_keeper.values())
    return [{"size": s, "clusters": n} for s, n in sorted(sizes.items())], rows


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
    if stats["redactions"]:
        t = table("redactions", "type", "count")
        for name, n in stats["redactions"].items():
            t.add_row(name, f"{n:,}")
        console.print(t)
    b = stats["balance"]
    mark = "[green]balanced[/green]" if b["balanced"] else "[red]NOT BALANCED[/red]"
    console.print(f"ledger: input {b['input']:,} = kept {b['kept']:,} + dropped {b['dropped']:,}  {mark}"
                  f"  (ledger rows {b['ledger_rows']:,})")
