"""Near-duplicate removal with MinHash-LSH, distributed through Ray end to end.

Signatures and bands are computed per batch at the end of the preceding map segment
(`stages/dedupe/minhash.py`, on text normalised per kind by `stages/dedupe/normalise.py`). The
decision then runs as Ray tasks over hash partitions (`pipeline/exchange.py`):

1. explode every document into (band key, node) rows, shuffled by band key;
2. per LSH bucket, candidate pairs: each member with the bucket's first member and with the next
   `bucket_window` members (all pairs in small buckets, bounded work in the huge buckets that
   shared boilerplate makes);
3. verification: the pairs meet each side's payload in two exchanges, and only pairs at or above
   `threshold` stay: true Jaccard of the shingle sets (`verify: jaccard`) or the share of equal
   signature values (`verify: signature`, the unbiased MinHash estimate); `verify: null` keeps
   every candidate pair, as DataTrove and NeMo Curator do;
4. connected components of the verified pairs (`pipeline/components.py`);
5. one keeper per component by a deterministic rule (`keep`: earliest, longest or the highest
   `score_column`, ties to the earliest), the rest dropped as `near_duplicate` with the keeper's
   id as detail.

With `existing` (earlier curate outputs), those shards' documents join the clustering as
keepers only: they are never dropped, and a new document in their component is dropped with the
existing keeper's id (dedupe of a new round against the kept corpus).

Node keys are `_unit << 32 | _row` (existing documents: negative), so "earliest" is the smallest
key and every step's output is a function of sets: the same for any number of workers.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.components import both_directions, connected_components, local_stars, unique_pairs
from pipeline.exchange import PART, Parts, fmix64, from_blocks, partition_of, step
from pipeline.manifest import output_shard_files
from pipeline.stage import Decision, GlobalStage, Resources, partitions_for, set_columns
from stages.dedupe import minhash
from stages.dedupe.normalise import AUTO_KIND_MODES, MODES, detect_kinds, kinds_of, normalise

BANDS, SIG, SHINGLES, SCORE = "_near.bands", "_near.sig", "_near.shingles", "_near.score"
REASON = "near_duplicate"
DEFAULT_NGRAM = {"config": 2, "default": 3}
MAX_SIGNAL_BYTES = 32 << 20  # text normalised and hashed at once, to bound a worker's memory
JACCARD_CHUNK = 4_000_000  # shingle hashes compared at once in verification
PARTITION_BYTES = 64 << 20  # signals (bands, payloads) per shuffle partition, to bound a worker's memory


class NearDedupe(GlobalStage):
    """MinHash-LSH near-duplicate removal (Broder 1997; LSH banding as in datasketch's MinHashLSH)
    with candidate verification, distributed connected components and a deterministic keeper.

    Options: `threshold` (Jaccard at which a verified pair is a duplicate; also picks bands x rows
    with datasketch's rule when `bands`/`rows` are null), `num_perm`, `bands`, `rows`, `ngram`
    (words per shingle: a number, or kind -> number with `default`; null: 2 for configs, whose
    lines are short `key value` pairs, 3 for the rest), `seed` (datasketch's permutations for this
    seed), `hashfunc` (`xxh`, or `sha1` for datasketch's default hash), `verify` (`jaccard`,
    `signature` or null), `normalise` (`auto`: logs masked, other kinds `text`, and documents of
    kind `other` typed by their content first; or one mode for all; or a mapping kind -> mode with
    `default`), `keep` (`earliest`, `longest`, `score`), `score_column`, `existing` (curate output
    folders whose documents are kept and deduped against), `bucket_window`, `rows_per_partition`
    (shuffle partition size), `workers` (at most this many tasks at once, in the signal segment and
    in every step; null: as many as Ray runs)."""

    name = "near_dedupe"
    duplicate_reasons = (REASON,)

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, bands: int | None = 16, rows: int | None = 8,
                 ngram: int | dict[str, int] | None = None, seed: int = 1, hashfunc: Literal["xxh", "sha1"] = "xxh",
                 verify: Literal["jaccard", "signature"] | None = "jaccard",
                 normalise: str | dict[str, str] = "auto",
                 keep: Literal["earliest", "longest", "score"] = "earliest", score_column: str | None = None,
                 existing: list[str] | None = None, bucket_window: int = 4, rows_per_partition: int = 250_000,
                 workers: int | None = None):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither (then the threshold picks them)")
        if bands is None:
            bands, rows = minhash.optimal_params(threshold, num_perm)
        if bands * rows > num_perm:
            raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
        if keep == "score" and not score_column:
            raise ValueError("keep: score needs score_column")
        if ngram is None:
            ngram = DEFAULT_NGRAM
        ngram_by_kind = dict(ngram) if isinstance(ngram, dict) else {"default": ngram}
        self.default_ngram = ngram_by_kind.pop("default", DEFAULT_NGRAM["default"])
        if min([self.default_ngram, *ngram_by_kind.values()]) < 1 or bucket_window < 0:
            raise ValueError("ngram must be >= 1 and bucket_window >= 0")
        self.threshold, self.num_perm, self.bands, self.rows = threshold, num_perm, bands, rows
        self.ngram_by_kind, self.seed, self.hashfunc, self.verify = ngram_by_kind, seed, hashfunc, verify
        self.mode_by_kind, self.default_mode = _modes(normalise)
        self.detect = normalise == "auto"
        self.keep, self.score_column = keep, score_column
        self.existing = list(existing or [])
        self.bucket_window, self.rows_per_partition = bucket_window, rows_per_partition
        self.workers = workers
        self.resources = Resources(batch_size=4096, concurrency=workers)

    # -- signal: per batch, in the preceding map segment ----------------------------------------

    def columns(self) -> dict[str, pa.DataType]:
        cols = {BANDS: pa.list_(pa.uint64()), SCORE: pa.float64()}
        if self.verify == "signature":
            cols[SIG] = pa.list_(pa.uint32(), self.num_perm)
        elif self.verify == "jaccard":
            cols[SHINGLES] = pa.list_(pa.uint32())
        return cols

    def signal(self, batch: pa.Table) -> pa.Table:
        parts = [self._signal_columns(chunk) for chunk in _byte_chunks(batch)]
        cols = {name: pa.concat_arrays([p[name] for p in parts]) if parts else pa.array([], t)
                for name, t in self.columns().items()}
        return set_columns(batch, cols)

    def _signal_columns(self, batch: pa.Table) -> dict[str, pa.Array]:
        raw = batch["text"].fill_null("")
        raw = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
        kinds = kinds_of(batch["kind"] if "kind" in batch.column_names else pa.nulls(batch.num_rows, pa.string()))
        if self.detect:
            kinds = detect_kinds(raw.cast(pa.large_string()), kinds)
        modes = np.array([self.mode_by_kind.get(k, self.default_mode) for k in kinds], dtype=object)
        hashes, offsets = self._shingles(normalise(raw, modes), kinds)
        sigs = minhash.signatures(hashes, offsets, self.num_perm, self.seed)
        empty = np.diff(offsets) == 0
        keys = minhash.band_hashes(sigs, self.bands, self.rows)
        band_offsets = np.r_[0, np.cumsum(np.where(empty, 0, self.bands))].astype(np.int32)
        out = {BANDS: pa.ListArray.from_arrays(pa.array(band_offsets), pa.array(keys[~empty].ravel(), pa.uint64())),
               SCORE: pa.array(keeper_scores(batch, self.keep, self.score_column), pa.float64())}
        if self.verify == "signature":
            out[SIG] = pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), self.num_perm)
        elif self.verify == "jaccard":
            out[SHINGLES] = _shingle_sets(hashes, offsets)
        return out

    def _shingles(self, text: pa.Array, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes and per-document offsets, each document with its kind's shingle size."""
        sizes = np.array([self.ngram_by_kind.get(k, self.default_ngram) for k in kinds], np.int64)
        parts = []
        for n in np.unique(sizes) if len(sizes) else [self.default_ngram]:
            rows = np.flatnonzero(sizes == n) if len(sizes) else np.zeros(0, np.int64)
            subset = text if len(rows) == len(text) else text.take(pa.array(rows))
            if self.hashfunc == "sha1":
                parts.append((rows, *minhash.sha1_shingle_hashes(subset.to_pylist(), int(n))))
            else:
                parts.append((rows, *minhash.shingle_hashes(subset, int(n))))
        if len(parts) == 1:
            return parts[0][1], parts[0][2]
        counts = np.zeros(len(text), np.int64)
        for rows, _, offsets in parts:
            counts[rows] = np.diff(offsets)
        offsets = np.zeros(len(text) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        hashes = np.empty(int(offsets[-1]), np.uint32)
        for rows, h, off in parts:
            n = np.diff(off)
            hashes[np.repeat(offsets[:-1][rows], n) + np.arange(len(h)) - np.repeat(off[:-1], n)] = h
        return hashes, offsets

    # -- decide: over the whole corpus, on Ray ---------------------------------------------------

    def decide(self, ds, rows: int):
        import ray.data

        ds = ds.materialize()
        drops, stats = self.decide_blocks(ds.to_arrow_refs(), rows, ds.size_bytes())
        return Decision(ray.data.from_arrow_refs(drops), stats)

    def decide_blocks(self, blocks: list, rows: int, signal_bytes: int | None = None) -> tuple[list, dict]:
        """`decide` over Arrow tables in the object store (refs): returns refs of the drop tables,
        and the decision's statistics."""
        import ray

        w = self.workers
        if signal_bytes is None:
            nbytes = ray.remote(_table_nbytes)
            signal_bytes = sum(ray.get([nbytes.remote(b) for b in blocks]))
        existing_rows = sum(n for _, n in existing_shards(self.existing))
        signal_bytes *= 1 + existing_rows / max(rows, 1)
        partitions = max(w or _cluster_cpus(), partitions_for(rows + existing_rows, self.rows_per_partition),
                         -(-int(signal_bytes) // PARTITION_BYTES))
        stats = {"partitions": partitions}
        payload = {"signature": SIG, "jaccard": SHINGLES}.get(self.verify)
        buckets, attrs = step(_explode, [from_blocks(blocks)], [partitions, partitions], (partitions, payload, False),
                              max_in_flight=w)
        if self.existing:
            more_buckets, more_attrs = self._existing_signals(partitions, payload)
            buckets = [a + b for a, b in zip(buckets, more_buckets)]
            attrs = [a + b for a, b in zip(attrs, more_attrs)]
        if self.verify is None:
            (edges,) = step(_bucket_pairs, [buckets], [partitions], (partitions, self.bucket_window, True),
                            max_in_flight=w)
        else:
            (pairs,) = step(_bucket_pairs, [buckets], [partitions], (partitions, self.bucket_window, False),
                            max_in_flight=w)
            waves = _verify_waves(pairs, attrs, partitions)
            stats["verify_waves"] = waves
            edges, counted = [[] for _ in range(partitions)], []
            for wave in range(waves):
                (attached,) = step(_attach_other, [pairs, attrs], [partitions], (partitions, payload, wave, waves),
                                   max_in_flight=w)
                wave_edges, wave_counts = step(_verify, [attached, attrs], [partitions, None],
                                               (partitions, payload, self.threshold), max_in_flight=w)
                edges = [a + b for a, b in zip(edges, wave_edges)]
                counted += wave_counts
            counted = pa.concat_tables(ray.get(counted))
            stats.update(candidates=pc.sum(counted["candidates"]).as_py(),
                         verified=pc.sum(counted["verified"]).as_py())
        members, stats["cc_rounds"] = connected_components(edges, partitions, max_in_flight=w)
        (members,) = step(member_attrs, [members, attrs], [partitions], (partitions,), max_in_flight=w)
        (drops,) = step(_keepers, [members], [None], max_in_flight=w)
        return drops, stats

    # -- dedupe against an existing corpus --------------------------------------------------------

    def check(self) -> None:
        existing_shards(self.existing)

    def _existing_signals(self, partitions: int, payload: str | None) -> tuple[Parts, Parts]:
        calls = [(path, index) for index, (path, _) in enumerate(existing_shards(self.existing))]
        return step(_existing_file_signals, [], [partitions, partitions], (self, partitions, payload), task_args=calls,
                    max_in_flight=self.workers)


def keeper_scores(batch: pa.Table, keep: str, score_column: str | None) -> np.ndarray:
    """What the keeper rule ranks by, per document: length, a score column, or nothing (earliest)."""
    if keep == "longest":
        return pc.utf8_length(batch["text"].fill_null("")).to_numpy(zero_copy_only=False).astype(np.float64)
    if keep == "score":
        if score_column not in batch.column_names:
            raise ValueError(f"keep: score reads column {score_column!r}, which no earlier stage adds")
        return batch[score_column].cast(pa.float64()).fill_null(-np.inf).to_numpy(zero_copy_only=False)
    return np.zeros(batch.num_rows)


def existing_shards(roots: list[str]) -> list[tuple[str, int]]:
    """The shard files of earlier curate outputs (`existing:`), with their rows, in a fixed order."""
    return [shard for root in roots for shard in output_shard_files(root)]


def _modes(option: str | dict[str, str]) -> tuple[dict[str, str], str]:
    if option == "auto":
        return dict(AUTO_KIND_MODES), "text"
    if isinstance(option, str):
        if option not in MODES:
            raise ValueError(f"normalise must be auto, one of {', '.join(MODES)}, or a mapping kind -> mode")
        return {}, option
    by_kind = dict(option)
    default = by_kind.pop("default", "text")
    bad = sorted({default, *by_kind.values()} - set(MODES))
    if bad:
        raise ValueError(f"normalise: unknown mode(s) {', '.join(bad)}; known: {', '.join(MODES)}")
    return by_kind, default


def _table_nbytes(table: pa.Table) -> int:
    return table.nbytes


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _byte_chunks(batch: pa.Table):
    """Slices of a batch holding at most about `MAX_SIGNAL_BYTES` of text each."""
    if batch.num_rows == 0:
        yield batch
        return
    sizes = pc.binary_length(batch["text"].fill_null("")).to_numpy(zero_copy_only=False).astype(np.int64)
    bounds = np.cumsum(sizes) // MAX_SIGNAL_BYTES
    cuts = np.r_[0, np.flatnonzero(np.diff(bounds)) + 1, batch.num_rows]
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b > a:
            yield batch.slice(a, b - a)


def _shingle_sets(hashes: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Each document's distinct shingle hashes, sorted. Documents of similar length are sorted
    together as the rows of one padded matrix (numpy's SIMD sort of short uint32 rows is ten
    times faster than one sort of the whole batch)."""
    counts = np.diff(offsets)
    out_counts = np.zeros(len(counts), np.int64)
    sorted_rows: list[tuple[np.ndarray, np.ndarray]] = []
    width = np.maximum(16, 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64))
    for w in np.unique(width[counts > 0]):
        docs = np.flatnonzero((width == w) & (counts > 0))
        n = counts[docs]
        rows = np.full((len(docs), int(w)), minhash.U32_MAX, np.uint32)
        row_of = np.repeat(np.arange(len(docs)), n)
        col = np.arange(len(row_of)) - np.repeat(np.cumsum(n) - n, n)
        rows[row_of, col] = hashes[np.repeat(offsets[:-1][docs], n) + col]
        rows.sort(axis=1)
        keep = np.arange(int(w))[None, :] < n[:, None]  # the pads sort last
        keep[:, 1:] &= rows[:, 1:] != rows[:, :-1]
        out_counts[docs] = keep.sum(axis=1)
        sorted_rows.append((docs, rows[keep]))
    values = np.empty(int(out_counts.sum()), np.uint32)
    new_offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(out_counts, out=new_offsets[1:])
    for docs, flat in sorted_rows:
        n = out_counts[docs]
        values[np.repeat(new_offsets[:-1][docs], n) + (np.arange(len(flat)) - np.repeat(np.cumsum(n) - n, n))] = flat
    return pa.ListArray.from_arrays(pa.array(new_offsets.astype(np.int32)), pa.array(values, pa.uint32()))


# -- the steps (each runs as Ray tasks, one per partition) --------------------------------------


def _node_keys(table: pa.Table) -> np.ndarray:
    unit = table["_unit"].to_numpy().astype(np.int64)
    row = table["_row"].to_numpy().astype(np.int64)
    if len(row) and (row.max() >= 1 << 32 or unit.min() < 0):
        raise ValueError("near_dedupe needs _row < 2^32 and _unit >= 0")
    return (unit << 32) | row


def _explode(table: pa.Table, partitions: int, payload: str | None, existing: bool, nodes: np.ndarray | None = None):
    """One block of signals -> (band key, node) rows by band key, and node attributes by node."""
    nodes = _node_keys(table) if nodes is None else nodes
    bands = table[BANDS].combine_chunks() if isinstance(table[BANDS], pa.ChunkedArray) else table[BANDS]
    lengths = pc.list_value_length(bands).fill_null(0).to_numpy(zero_copy_only=False)
    keys = pc.list_flatten(bands).to_numpy(zero_copy_only=False).astype(np.uint64)
    owners = np.repeat(nodes, lengths)
    buckets = pa.table({"bucket": pa.array(keys, pa.uint64()), "node": pa.array(owners, pa.int64()),
                        PART: pa.array(partition_of(keys, partitions), pa.int32())})
    has = lengths > 0  # documents without tokens are never in a cluster
    cols = {"node": pa.array(nodes[has], pa.int64()), "id": table["id"].filter(pa.array(has)),
            "score": table[SCORE].filter(pa.array(has)),
            "existing": pa.array(np.full(int(has.sum()), existing), pa.bool_())}
    if payload:
        cols["payload"] = table[payload].filter(pa.array(has))
    cols[PART] = pa.array(partition_of(nodes[has], partitions), pa.int32())
    return buckets, pa.table(cols)


def _existing_file_signals(stage: NearDedupe, partitions: int, payload: str | None, path: str, index: int):
    """Signals of one shard of an existing corpus, with negative node keys (they sort first)."""
    pf = pq.ParquetFile(path)
    wanted = [c for c in ("id", "text", "kind", stage.score_column) if c and c in pf.schema_arrow.names]
    buckets, attrs, start = [], [], 0
    for batch in pf.iter_batches(batch_size=4096, columns=wanted):
        table = stage.signal(pa.Table.from_batches([batch]))
        rows = np.arange(start, start + table.num_rows, dtype=np.int64)
        start += table.num_rows
        b, a = _explode(table, partitions, payload, True, nodes=-(((index << 32) | rows) + 1))
        buckets.append(b)
        attrs.append(a)
    if not buckets:
        return _explode(stage.signal(pf.schema_arrow.empty_table().select(wanted)), partitions, payload, True,
                        nodes=np.zeros(0, np.int64))
    return pa.concat_tables(buckets), pa.concat_tables(attrs)


def _bucket_pairs(buckets: pa.Table | None, partitions: int, window: int, both: bool):
    """Candidate pairs (u < v) from one partition of LSH buckets: each member with the bucket's
    first (smallest) member and with its next `window` members."""
    empty = np.zeros(0, np.int64)
    if buckets is None or buckets.num_rows == 0:
        return both_directions(empty, empty, partitions) if both else _pairs_table(empty, empty, partitions)
    key = buckets["bucket"].to_numpy()
    node = buckets["node"].to_numpy()
    order = np.lexsort((node, key))
    key, node = key[order], node[order]
    index = np.arange(len(key))
    start = np.r_[True, key[1:] != key[:-1]]
    first = np.maximum.accumulate(np.where(start, index, 0))
    us, vs = [node[first[~start]]], [node[~start]]  # the star around the first member
    for d in range(1, min(window, len(key) - 1) + 1):
        same = (key[d:] == key[:-d]) & (first[:-d] != index[:-d])
        us.append(node[:-d][same])
        vs.append(node[d:][same])
    u, v = np.concatenate(us), np.concatenate(vs)
    keep = u != v  # a document repeats in a bucket only through a 64-bit key collision
    u, v = u[keep], v[keep]
    return both_directions(*local_stars(u, v), partitions) if both else _pairs_table(u, v, partitions)


def _pairs_table(u: np.ndarray, v: np.ndarray, partitions: int) -> pa.Table:
    return pa.table({"u": pa.array(u, pa.int64()), "v": pa.array(v, pa.int64()),
                     PART: pa.array(partition_of(v, partitions), pa.int32())})


def _lookup(attrs: pa.Table, nodes: np.ndarray) -> np.ndarray:
    """Row of each node in a partition's attributes."""
    keys = attrs["node"].to_numpy()
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], nodes)
    pos = np.minimum(pos, len(keys) - 1)
    if len(nodes) and not np.array_equal(keys[order][pos], nodes):
        raise RuntimeError("a candidate pair names a node without attributes")
    return order[pos]


def _verify_waves(pairs: Parts, attrs: Parts, partitions: int) -> int:
    """How many rounds to verify the candidate pairs in, so that one task holds about
    `PARTITION_BYTES` of pairs with their payloads: every pair carries a copy of one side's
    payload, and in a corpus of many near copies the pairs outnumber the documents many times."""
    import ray

    sizes = ray.remote(_rows_and_bytes)
    pair_rows = sum(r for r, _ in ray.get([sizes.remote(ref) for part in pairs for ref in part]))
    attr_sizes = ray.get([sizes.remote(ref) for part in attrs for ref in part])
    per_pair = sum(b for _, b in attr_sizes) / max(sum(r for r, _ in attr_sizes), 1)
    return max(1, -(-int(pair_rows * per_pair) // (PARTITION_BYTES * partitions)))


def _rows_and_bytes(table: pa.Table) -> tuple[int, int]:
    return table.num_rows, table.nbytes


def _wave_of(u: np.ndarray, v: np.ndarray, waves: int) -> np.ndarray:
    return fmix64((u.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ v.astype(np.uint64)) % np.uint64(waves)


def _attach_other(pairs: pa.Table | None, attrs: pa.Table | None, partitions: int, payload: str, wave: int = 0,
                  waves: int = 1):
    """Partition by v: distinct pairs of this wave, each with v's payload; on to u's partition."""
    if pairs is None or pairs.num_rows == 0:
        return pa.table({"u": pa.array([], pa.int64()), "v": pa.array([], pa.int64()),
                         "other": pa.array([], attrs.schema.field("payload").type if attrs is not None else pa.null()),
                         PART: pa.array([], pa.int32())})
    u, v = unique_pairs(pairs["u"].to_numpy(), pairs["v"].to_numpy())
    if waves > 1:
        mine = _wave_of(u, v, waves) == np.uint64(wave)
        u, v = u[mine], v[mine]
    other = attrs["payload"].take(pa.array(_lookup(attrs, v)))
    return pa.table({"u": pa.array(u, pa.int64()), "v": pa.array(v, pa.int64()), "other": other,
                     PART: pa.array(partition_of(u, partitions), pa.int32())})


def _verify(pairs: pa.Table | None, attrs: pa.Table | None, partitions: int, payload: str, threshold: float):
    """Partition by u: similarity of each pair; the pairs at or above the threshold become edges."""
    empty = np.zeros(0, np.int64)
    if pairs is None or pairs.num_rows == 0:
        return both_directions(empty, empty, partitions), pa.table({"candidates": [0], "verified": [0]})
    u, v = pairs["u"].to_numpy(), pairs["v"].to_numpy()
    mine = attrs["payload"].take(pa.array(_lookup(attrs, u)))
    other = pairs["other"].combine_chunks() if isinstance(pairs["other"], pa.ChunkedArray) else pairs["other"]
    if isinstance(mine, pa.ChunkedArray):
        mine = mine.combine_chunks()
    sim = _signature_similarity(mine, other) if payload == SIG else _jaccard(mine, other)
    keep = sim >= threshold
    stats = pa.table({"candidates": [len(u)], "verified": [int(keep.sum())]})
    return both_directions(*local_stars(u[keep], v[keep]), partitions), stats


def _signature_similarity(a: pa.Array, b: pa.Array) -> np.ndarray:
    width = a.type.list_size
    x = a.flatten().to_numpy().reshape(-1, width)
    y = b.flatten().to_numpy().reshape(-1, width)
    return (x == y).mean(axis=1)


def _jaccard(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Exact Jaccard of sorted distinct sets, pair by pair, vectorised over chunks of pairs: each
    side's values keyed by pair are one sorted run, so a stable sort of both is a linear merge,
    and the intersection is the equal neighbours."""
    la = pc.list_value_length(a).to_numpy(zero_copy_only=False).astype(np.int64)
    lb = pc.list_value_length(b).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.zeros(len(a))
    start = 0
    while start < len(a):
        sizes = np.cumsum(la[start:] + lb[start:])
        stop = start + max(1, int(np.searchsorted(sizes, JACCARD_CHUNK, side="right")))
        n = stop - start
        ids = np.arange(n, dtype=np.uint64) << np.uint64(32)
        ka = np.repeat(ids, la[start:stop]) | pc.list_flatten(a.slice(start, n)).to_numpy().astype(np.uint64)
        kb = np.repeat(ids, lb[start:stop]) | pc.list_flatten(b.slice(start, n)).to_numpy().astype(np.uint64)
        merged = np.concatenate([ka, kb])
        merged.sort(kind="stable")
        same = merged[1:][merged[1:] == merged[:-1]]
        inter = np.bincount((same >> np.uint64(32)).astype(np.int64), minlength=n).astype(np.float64)
        union = la[start:stop] + lb[start:stop] - inter
        out[start:stop] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        start = stop
    return out


def member_attrs(members: pa.Table | None, attrs: pa.Table | None, partitions: int, extra: tuple[str, ...] = ()):
    """Partition by node: each member with its score, id and origin (and the `extra` attribute
    columns); on to its root's partition."""
    if members is None or members.num_rows == 0:
        extras = {c: pa.array([], attrs.schema.field(c).type) for c in extra} if attrs is not None else {}
        return pa.table({"root": pa.array([], pa.int64()), "node": pa.array([], pa.int64()),
                         "score": pa.array([], pa.float64()), "existing": pa.array([], pa.bool_()),
                         "id": pa.array([], pa.string()), **extras, PART: pa.array([], pa.int32())})
    node, root = members["node"].to_numpy(), members["root"].to_numpy()
    at = _lookup(attrs, node)
    idx = pa.array(at)
    cols = {"root": pa.array(root, pa.int64()), "node": pa.array(node, pa.int64())}
    cols.update({c: attrs[c].take(idx) for c in ("score", "existing", "id", *extra)})
    cols[PART] = pa.array(partition_of(root, partitions), pa.int32())
    return pa.table(cols)


def keeper_choice(members: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The keeper rule over component members (`root`, `node`, `score`, `existing`): existing
    documents first, then the highest score, then the smallest key. Returns the members' order
    (by component, keeper first), each sorted row's keeper (a position in that order) and which
    sorted rows are dropped."""
    root = members["root"].to_numpy()
    node = members["node"].to_numpy()
    score = members["score"].to_numpy(zero_copy_only=False)
    existing = members["existing"].to_numpy(zero_copy_only=False)
    order = np.lexsort((node, -score, ~existing, root))  # the keeper sorts first in its component
    root, existing = root[order], existing[order]
    first = np.r_[True, root[1:] != root[:-1]]
    keeper = np.maximum.accumulate(np.where(first, np.arange(len(root)), 0))
    return order, keeper, ~first & ~existing


def _keepers(members: pa.Table | None) -> pa.Table:
    """Partition by root: per component, the keeper (existing documents first, then the highest
    score, then the smallest key); every other new member is a drop naming the keeper."""
    schema = pa.schema([("_unit", pa.int32()), ("_row", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])
    if members is None or members.num_rows == 0:
        return schema.empty_table()
    order, keeper, drop = keeper_choice(members)
    node = members["node"].to_numpy()[order]
    ids = members["id"].take(pa.array(order))
    dropped = node[drop]
    return pa.table({
        "_unit": pa.array((dropped >> 32).astype(np.int32), pa.int32()),
        "_row": pa.array(dropped & 0xFFFFFFFF, pa.int64()),
        "reason": pa.array([REASON] * len(dropped), pa.string()),
        "detail": ids.take(pa.array(keeper[drop])),
    }, schema=schema)
