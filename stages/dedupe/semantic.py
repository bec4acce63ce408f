"""Semantic dedupe: near-duplicates in meaning, not only in words (SemDeDup, Abbas, Tirumala,
Simig, Ganguli and Morcos, 2023: embed, cluster with k-means, drop pairs above a cosine threshold
within a cluster), distributed through Ray end to end.

The signal (a unit vector per document, `stages/dedupe/embed.py`) is computed on Ray actors at
the end of the preceding map segment, the model loaded once per actor, each document cut to a
bounded length. The decision then runs as Ray tasks:

1. spherical k-means, seeded: the first centroids are the documents with the smallest seeded
   hashes of their node keys (the same for any split into blocks); each iteration, a task per
   block of vectors returns only the per-centroid sums and counts, the driver adds them in a fixed
   block order (k x 384 numbers: never the vectors);
2. every vector goes to its nearest centroid; the exchange (`pipeline/exchange.py`) brings
   each cluster's members into one task, partitioned by cluster id;
3. within each cluster, the pairs at or above `threshold` cosine that also agree on their hard
   tokens (`guard`: options, operators, file types, paths, signed numbers, negation of the code;
   `stages/dedupe/hard_tokens.py`; the pairs it refuses are counted in the stage's stats),
   compared `PAIR_BLOCK` rows against `PAIR_BLOCK` rows at a time, so a task holds its
   partition's vectors and one block of cosines, never the square of a cluster (a partition holds
   whole clusters: `cluster_rows` keeps them near that size, and the largest is in the stage's
   stats);
4. connected components of those pairs (`pipeline/components.py`), one keeper per component
   by `near_dedupe`'s rule (`keep`: earliest, longest or the highest `score_column`); the members
   at or above `threshold` cosine to the keeper and agreeing with it on the guard are dropped as
   `semantic_duplicate` with the keeper's id and that cosine as detail (`<keeper id>
   cosine=0.9731`). The rest of a component stays: it hangs on the keeper only through a chain
   of pairs, and chains drift in meaning.

With `existing` (earlier curate outputs), their documents are embedded and take part as keepers
only, as in `near_dedupe`. Node keys and every tie-break are those of `near_dedupe`, so the
output does not depend on the number of workers.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.components import both_directions, connected_components, local_stars
from pipeline.exchange import PART, fmix64, from_blocks, partition_of, step
from pipeline.stage import Decision, GlobalStage, Resources, partitions_for, set_columns
from stages.dedupe import embed, hard_tokens
from stages.dedupe.near import (PARTITION_BYTES, _cluster_cpus, _node_keys, existing_shards, keeper_choice,
                                keeper_scores, member_attrs)
from stages.dedupe.normalise import detect_kinds, kinds_of

EMB, SCORE, HARD = "_semantic.emb", "_semantic.score", "_semantic.hard"
REASON = "semantic_duplicate"
PAIR_BLOCK = 2048  # rows compared against as many rows at once within a cluster
ASSIGN_ROWS = 16384  # vectors scored against the centroids at once
VECTOR = pa.list_(pa.float32(), embed.DIM)
HARD_TYPE = pa.list_(pa.uint64(), len(hard_tokens.CATEGORIES))


class SemanticDedupe(GlobalStage):
    """Semantic near-duplicate removal: embeddings, seeded distributed k-means, cosine pairs
    within clusters, connected components and `near_dedupe`'s keeper rule.

    Options: `threshold` (cosine at which a pair is a duplicate), `guard` (the hard-token
    categories a pair must also agree on, `stages/dedupe/hard_tokens.py`; null: the default six,
    `[]`: the cosine alone), `model` (`minilm` or `minilm-static`, see `stages/dedupe/embed.py`),
    `max_tokens` and `max_chars` (each document
    cut to this length before embedding), `cluster_rows` (k-means clusters of about this many
    documents: k = documents / cluster_rows), `iterations` (of k-means at most), `seed`, `keep`
    (`earliest`, `longest`, `score`), `score_column`, `existing` (curate output folders whose
    documents are kept and deduped against), `rows_per_partition` (shuffle partition size),
    `workers` (at most this many embedding actors, and tasks at once in every step)."""

    name = "semantic_dedupe"
    duplicate_reasons = (REASON,)

    def __init__(self, threshold: float = 0.88, guard: list[str] | None = None,
                 model: Literal["minilm", "minilm-static"] = "minilm", max_tokens: int = 128, max_chars: int = 2000,
                 cluster_rows: int = 1000, iterations: int = 10, seed: int = 1,
                 keep: Literal["earliest", "longest", "score"] = "earliest", score_column: str | None = None,
                 existing: list[str] | None = None, rows_per_partition: int = 250_000, workers: int | None = None):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        if model not in embed.MODELS:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(embed.MODELS)}")
        if min(max_tokens, max_chars, cluster_rows, iterations) < 1:
            raise ValueError("max_tokens, max_chars, cluster_rows and iterations must be >= 1")
        if keep == "score" and not score_column:
            raise ValueError("keep: score needs score_column")
        guard = list(hard_tokens.DEFAULT_GUARD if guard is None else guard)
        unknown = sorted(set(guard) - set(hard_tokens.CATEGORIES))
        if unknown:
            raise ValueError(f"unknown guard categories {unknown}; known: {', '.join(hard_tokens.CATEGORIES)}")
        self.guard = [c for c in hard_tokens.CATEGORIES if c in guard]
        self.threshold, self.model, self.max_tokens, self.max_chars = threshold, model, max_tokens, max_chars
        self.cluster_rows, self.iterations, self.seed = cluster_rows, iterations, seed
        self.keep, self.score_column = keep, score_column
        self.existing = list(existing or [])
        self.rows_per_partition, self.workers = rows_per_partition, workers
        self.resources = Resources(batch_size=256, concurrency=workers, actor=True)

    # -- signal: per batch, on the actors of the preceding map segment ----------------------------

    def columns(self) -> dict[str, pa.DataType]:
        return {EMB: VECTOR, SCORE: pa.float64(), HARD: HARD_TYPE}

    def setup(self) -> None:
        self._encoder()

    def _encoder(self) -> embed.Encoder:
        return embed.encoder(self.model, self.max_tokens, self.max_chars)

    def signal(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].fill_null("").to_pylist()
        vectors = np.zeros((len(texts), embed.DIM), np.float32)  # a document without words: no vector
        has = [i for i, t in enumerate(texts) if t.strip()]
        if has:
            vectors[has] = self._encoder().encode([texts[i] for i in has])
        kinds = kinds_of(batch["kind"] if "kind" in batch.column_names else pa.nulls(batch.num_rows, pa.string()))
        kinds = detect_kinds(batch["text"].fill_null("").combine_chunks().cast(pa.large_string()), kinds)
        hard = np.array([hard_tokens.hashes(t[: self.max_chars], k in hard_tokens.TEMPLATE_KINDS)
                         for t, k in zip(texts, kinds)], np.uint64).reshape(-1)  # the part the encoder sees
        cols = {EMB: pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), embed.DIM),
                SCORE: pa.array(keeper_scores(batch, self.keep, self.score_column), pa.float64()),
                HARD: pa.FixedSizeListArray.from_arrays(pa.array(hard, pa.uint64()), len(hard_tokens.CATEGORIES))}
        return set_columns(batch, cols)

    def check(self) -> None:
        existing_shards(self.existing)

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
        shards = existing_shards(self.existing)
        files = [path for path, _ in shards]
        existing_rows = sum(n for _, n in shards)
        total = rows + existing_rows
        signal_bytes = (signal_bytes or rows * (embed.DIM * 4 + 64)) * (1 + existing_rows / max(rows, 1))
        partitions = max(w or _cluster_cpus(), partitions_for(total, self.rows_per_partition),
                         -(-int(signal_bytes) // PARTITION_BYTES))
        (vectors,) = step(_vectors, [from_blocks(blocks)], [None], max_in_flight=w)
        if files:
            (more,) = step(_existing_vectors, [], [None], (self,), task_args=list(zip(files, range(len(files)))),
                           max_in_flight=w)
            vectors = vectors + more
        blocks_in = from_blocks(vectors)
        k = max(1, -(-total // self.cluster_rows))
        started = time.time()
        centroids, iterations = self._kmeans(blocks_in, k)
        kmeans_s = time.time() - started
        if len(centroids) == 0:  # no document has a vector
            return [ray.put(_keepers(None, self.threshold))], {"partitions": partitions, "clusters": 0}
        clustered, attrs = step(_assign, [blocks_in], [partitions, partitions], (centroids, partitions),
                                max_in_flight=w)
        guard = self._guard_columns()
        edges, stats = step(_cluster_pairs, [clustered], [partitions, None], (partitions, self.threshold, guard),
                            max_in_flight=w)
        members, cc_rounds = connected_components(edges, partitions, max_in_flight=w)
        (members,) = step(member_attrs, [members, attrs], [partitions], (partitions, ("emb", "hard")),
                          max_in_flight=w)
        (drops,) = step(_keepers, [members], [None], (self.threshold, guard), max_in_flight=w)
        stats = pa.concat_tables(ray.get(stats))
        return drops, {"partitions": partitions, "clusters": len(centroids), "kmeans_iterations": iterations,
                       "largest_cluster": int(max(stats["largest"].to_pylist(), default=0)),
                       "compared": int(sum(stats["compared"].to_pylist())),
                       "pairs": int(sum(stats["pairs"].to_pylist())),
                       "guarded": int(sum(stats["guarded"].to_pylist())),
                       "guarded_by": {c: int(sum(stats[f"guarded.{c}"].to_pylist())) for c in self.guard},
                       "cc_rounds": cc_rounds,
                       "kmeans_s": round(kmeans_s, 3)}

    def _guard_columns(self) -> np.ndarray:
        return np.array([hard_tokens.CATEGORIES.index(c) for c in self.guard], np.int64)

    def _kmeans(self, blocks, k: int) -> tuple[np.ndarray, int]:
        """Spherical k-means (cosine): seeded first centroids, then at most `iterations` rounds of
        per-block partial sums; stops early once no centroid moves."""
        import ray

        (samples,) = step(_seed_sample, [blocks], [None], (k, self.seed), max_in_flight=self.workers)
        picked = pa.concat_tables(ray.get(samples))
        if picked.num_rows == 0:
            return np.zeros((0, embed.DIM), np.float32), 0
        order = np.lexsort((picked["node"].to_numpy(), picked["key"].to_numpy()))[:k]
        centroids = _matrix(picked["emb"].take(pa.array(order)))
        for it in range(1, self.iterations + 1):
            (parts,) = step(_partial_sums, [blocks], [None], (centroids,), max_in_flight=self.workers)
            sums = np.zeros(centroids.shape, np.float64)
            counts = np.zeros(len(centroids), np.int64)
            for ref in parts:  # in block order, so the float sums are the same on every run
                t = ray.get(ref)
                sums += _matrix(t["sum"], np.float64)
                counts += t["count"].to_numpy()
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            moved = np.where(counts[:, None] > 0, sums / np.maximum(norms, 1e-12), centroids).astype(np.float32)
            if np.array_equal(moved, centroids):
                return centroids, it
            centroids = moved
        return centroids, self.iterations


def _matrix(column, dtype=np.float32) -> np.ndarray:
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)


# -- the steps (each runs as Ray tasks) ----------------------------------------------------------


def _vector_table(node: np.ndarray, ids, score, existing: bool, emb, hard) -> pa.Table:
    return pa.table({"node": pa.array(node, pa.int64()), "id": ids, "score": score,
                     "existing": pa.array(np.full(len(node), existing), pa.bool_()), "emb": emb, "hard": hard})


def _vectors(table: pa.Table, nodes: np.ndarray | None = None, existing: bool = False) -> pa.Table:
    """One block of signals -> the documents that have a vector, with their node keys."""
    nodes = _node_keys(table) if nodes is None else nodes
    emb = table[EMB].combine_chunks() if isinstance(table[EMB], pa.ChunkedArray) else table[EMB]
    has = pa.array(np.abs(_matrix(emb)).sum(axis=1) > 0) if len(emb) else pa.array([], pa.bool_())
    return _vector_table(nodes[has.to_numpy(zero_copy_only=False)], table["id"].filter(has),
                         table[SCORE].filter(has), existing, emb.filter(has), table[HARD].filter(has))


def _existing_vectors(stage: SemanticDedupe, path: str, index: int) -> pa.Table:
    """Vectors of one shard of an existing corpus, with negative node keys (they sort first)."""
    pf = pq.ParquetFile(path)
    wanted = [c for c in ("id", "text", "kind", stage.score_column) if c and c in pf.schema_arrow.names]
    out, start = [], 0
    for batch in pf.iter_batches(batch_size=1024, columns=wanted):
        table = stage.signal(pa.Table.from_batches([batch]))
        rows = np.arange(start, start + table.num_rows, dtype=np.int64)
        start += table.num_rows
        out.append(_vectors(table, nodes=-(((index << 32) | rows) + 1), existing=True))
    if not out:
        empty = stage.signal(pf.schema_arrow.empty_table().select(wanted))
        return _vectors(empty, nodes=np.zeros(0, np.int64), existing=True)
    return pa.concat_tables(out)


def _seed_sample(table: pa.Table | None, k: int, seed: int) -> pa.Table:
    """The block's `k` documents with the smallest seeded hashes of their keys: their union over
    blocks holds the corpus's `k` smallest, whatever the blocks are."""
    if table is None or table.num_rows == 0:
        return pa.table({"key": pa.array([], pa.uint64()), "node": pa.array([], pa.int64()),
                         "emb": pa.array([], VECTOR)})
    node = table["node"].to_numpy()
    key = fmix64(node.astype(np.uint64) ^ fmix64(np.full(len(node), seed, np.uint64)))
    top = np.lexsort((node, key))[:k]
    return pa.table({"key": pa.array(key[top], pa.uint64()), "node": pa.array(node[top], pa.int64()),
                     "emb": table["emb"].take(pa.array(top))})


def _nearest(emb: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    out = np.zeros(len(emb), np.int64)
    for start in range(0, len(emb), ASSIGN_ROWS):
        out[start: start + ASSIGN_ROWS] = np.argmax(emb[start: start + ASSIGN_ROWS] @ centroids.T, axis=1)
    return out


def _partial_sums(table: pa.Table | None, centroids: np.ndarray) -> pa.Table:
    """Per centroid: the sum of the block's vectors nearest to it, and their count."""
    sums = np.zeros(centroids.shape, np.float64)
    counts = np.zeros(len(centroids), np.int64)
    if table is not None and table.num_rows:
        emb = _matrix(table["emb"])
        nearest = _nearest(emb, centroids)
        order = np.argsort(nearest, kind="stable")
        ranked = nearest[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        sums[ranked[starts]] = np.add.reduceat(emb[order].astype(np.float64), starts, axis=0)
        counts = np.bincount(nearest, minlength=len(centroids))
    return pa.table({"count": pa.array(counts, pa.int64()),
                     "sum": pa.FixedSizeListArray.from_arrays(pa.array(sums.ravel(), pa.float64()), embed.DIM)})


def _assign(table: pa.Table | None, centroids: np.ndarray, partitions: int):
    """Each vector to its nearest centroid: (cluster, node, vector) by cluster, and the node's
    attributes (id, score, origin, vector) by node."""
    if table is None or table.num_rows == 0:
        table = _vector_table(np.zeros(0, np.int64), pa.array([], pa.string()), pa.array([], pa.float64()), False,
                              pa.array([], VECTOR), pa.array([], HARD_TYPE))
    cluster = _nearest(_matrix(table["emb"]), centroids) if table.num_rows else np.zeros(0, np.int64)
    node = table["node"].to_numpy()
    by_cluster = pa.table({"cluster": pa.array(cluster, pa.int64()), "node": table["node"], "emb": table["emb"],
                           "hard": table["hard"], PART: pa.array(partition_of(cluster, partitions), pa.int32())})
    attrs = table.append_column(PART, pa.array(partition_of(node, partitions), pa.int32()))
    return by_cluster, attrs


def _pair_stats(compared: int = 0, pairs: int = 0, largest: int = 0, refused: np.ndarray | None = None) -> pa.Table:
    """One task's counts; `refused`: the pairs the guard refused by category, then in all."""
    refused = np.zeros(len(hard_tokens.CATEGORIES) + 1, np.int64) if refused is None else refused
    return pa.table({"compared": [compared], "pairs": [pairs], "largest": [largest], "guarded": [int(refused[-1])],
                     **{f"guarded.{c}": [int(refused[i])] for i, c in enumerate(hard_tokens.CATEGORIES)}})


def _agree(a: np.ndarray, b: np.ndarray, guard: np.ndarray) -> np.ndarray:
    """Per row: whether the two rows of hard-token hashes agree on every guarded category."""
    return (a[:, guard] == b[:, guard]).all(axis=1) if len(guard) else np.ones(len(a), bool)


def _cluster_pairs(table: pa.Table | None, partitions: int, threshold: float, guard: np.ndarray):
    """Partition by cluster: within each cluster, the pairs (u < v) at or above the threshold that
    agree on the guarded hard tokens, block against block; edges as local stars, by node. The
    stats count the pairs the guard refused, in all and by category (a pair can differ in several)."""
    empty = np.zeros(0, np.int64)
    if table is None or table.num_rows == 0:
        return both_directions(empty, empty, partitions), _pair_stats()
    cluster, node = table["cluster"].to_numpy(), table["node"].to_numpy()
    order = np.lexsort((node, cluster))
    cluster, node = cluster[order], node[order]
    emb = _matrix(table["emb"].take(pa.array(order)))
    hard = _matrix(table["hard"].take(pa.array(order)), np.uint64)
    bounds = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1], True])
    us, vs, compared = [], [], 0
    refused = np.zeros(len(hard_tokens.CATEGORIES) + 1, np.int64)  # by category, then in all
    for a, b in zip(bounds[:-1], bounds[1:]):
        for i in range(a, b, PAIR_BLOCK):
            x = emb[i: min(i + PAIR_BLOCK, b)]
            for j in range(i, b, PAIR_BLOCK):
                y = emb[j: min(j + PAIR_BLOCK, b)]
                sim = x @ y.T
                if i == j:
                    sim = np.triu(sim, 1) if len(x) > 1 else np.zeros_like(sim)
                    compared += len(x) * (len(x) - 1) // 2
                else:
                    compared += len(x) * len(y)
                r, c = np.nonzero(sim >= threshold)
                differ = hard[i + r] != hard[j + c]
                ok = _agree(hard[i + r], hard[j + c], guard)
                refused[:-1] += differ[~ok].sum(axis=0)
                refused[-1] += int((~ok).sum())
                us.append(node[i + r[ok]])
                vs.append(node[j + c[ok]])
    u, v = np.concatenate(us), np.concatenate(vs)
    stats = _pair_stats(compared, len(u), int(np.diff(bounds).max()), refused)
    return both_directions(*local_stars(u, v), partitions), stats


def _keepers(members: pa.Table | None, threshold: float, guard: np.ndarray) -> pa.Table:
    """Partition by root: per component, the keeper by `near_dedupe`'s rule; every other new
    member within `threshold` of the keeper and agreeing with it on the guard is a drop naming
    the keeper and its cosine to it. Members that joined the component through a chain of pairs
    but are not close to the keeper stay: a chain of near pairs can link documents that mean
    different things."""
    schema = pa.schema([("_unit", pa.int32()), ("_row", pa.int64()), ("reason", pa.string()), ("detail", pa.string())])
    if members is None or members.num_rows == 0:
        return schema.empty_table()
    order, keeper, drop = keeper_choice(members)
    node = members["node"].to_numpy()[order]
    ids = members["id"].take(pa.array(order)).to_pylist()
    emb = _matrix(members["emb"].take(pa.array(order)))
    rows = np.flatnonzero(drop)
    hard = _matrix(members["hard"].take(pa.array(order)), np.uint64)
    cosine = np.einsum("ij,ij->i", emb[rows], emb[keeper[rows]])
    close = (cosine >= threshold) & _agree(hard[rows], hard[keeper[rows]], guard)
    rows, cosine = rows[close], cosine[close]
    dropped = node[rows]
    return pa.table({
        "_unit": pa.array((dropped >> 32).astype(np.int32), pa.int32()),
        "_row": pa.array(dropped & 0xFFFFFFFF, pa.int64()),
        "reason": pa.array([REASON] * len(rows), pa.string()),
        "detail": pa.array([f"{ids[keeper[r]]} cosine={c:.4f}" for r, c in zip(rows, cosine)], pa.string()),
    }, schema=schema)
