"""Connected components of a graph that never sits in one process: the alternating large-star /
small-star algorithm of Kiveris, Lattanzi, Mirrokni, Rastogi and Vassilvitskii, "Connected
Components in MapReduce and Beyond" (SoCC 2014).

Nodes are int64 keys; edges live in the object store, hash-partitioned by their first endpoint.
Each round is two exchanges (`pipeline/exchange.py`), each task vectorised with numpy over its
partition. The graph converges to one star per component, centred on the component's smallest
key, in O(log^2 n) rounds; a round whose edge set equals the previous one's ends the loop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.exchange import PART, Parts, fmix64, partition_of, step

EDGES = pa.schema([("u", pa.int64()), ("v", pa.int64())])
MEMBERS = pa.schema([("node", pa.int64()), ("root", pa.int64())])
MAX_ROUNDS = 100


def _arrays(table: pa.Table | None) -> tuple[np.ndarray, np.ndarray]:
    if table is None or table.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return table["u"].to_numpy(), table["v"].to_numpy()


def unique_pairs(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (u, v) pairs, sorted by u then v."""
    if len(u) == 0:
        return u, v
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    keep = np.ones(len(u), bool)
    keep[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[keep], v[keep]


def _group_min(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For pairs sorted by u: per row, the minimum v over the row's u group."""
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    mins = np.minimum.reduceat(v, starts)
    return np.repeat(mins, np.diff(np.r_[starts, len(u)]))


def _edges(u: np.ndarray, v: np.ndarray, by: np.ndarray, partitions: int) -> pa.Table:
    return pa.table({"u": pa.array(u, pa.int64()), "v": pa.array(v, pa.int64()),
                     PART: pa.array(partition_of(by, partitions), pa.int32())})


def both_directions(u: np.ndarray, v: np.ndarray, partitions: int) -> pa.Table:
    """Undirected edges as directed pairs both ways, partitioned by the first endpoint."""
    a, b = np.concatenate([u, v]), np.concatenate([v, u])
    return _edges(a, b, a, partitions)


def local_stars(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The components of one partition's edges, as stars (node, smallest node of its local
    component): the same components with fewer edges, so the distributed rounds are fewer.
    Min-label propagation with pointer jumping, vectorised."""
    if len(u) == 0:
        return u, v
    nodes, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
    a, b = inverse[: len(u)], inverse[len(u):]
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[a], label[b])
        new = label.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    leaf = label != np.arange(len(nodes))
    return nodes[leaf], nodes[label[leaf]]


def _fingerprint(u: np.ndarray, v: np.ndarray) -> int:
    """An order-free 64-bit digest of an edge set (with its size it tells rounds apart)."""
    mixed = fmix64(u.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ v.astype(np.uint64))
    return int(np.bitwise_xor.reduce(mixed)) if len(mixed) else 0


def _large_star(edges: pa.Table | None, partitions: int):
    """Per node u: link every larger neighbour to the smallest of u and its neighbours."""
    u, v = unique_pairs(*_arrays(edges))
    stats = pa.table({"edges": [len(u)], "digest": pa.array([_fingerprint(u, v)], pa.uint64())})
    if len(u) == 0:
        return _edges(u, v, u, partitions), stats
    m = np.minimum(_group_min(u, v), u)
    keep = v > u
    # each new edge {v, m} has v > m: the small star step groups by the larger endpoint
    return _edges(v[keep], m[keep], v[keep], partitions), stats


def _small_star(edges: pa.Table | None, partitions: int) -> pa.Table:
    """Per node u (edges to smaller neighbours only): link u and those neighbours to the smallest."""
    u, v = unique_pairs(*_arrays(edges))
    if len(u) == 0:
        return both_directions(u, v, partitions)
    m = _group_min(u, v)
    leaf = v != m
    a = np.concatenate([v[leaf], u])
    b = np.concatenate([m[leaf], m])
    a, b = unique_pairs(a, b)
    return both_directions(a, b, partitions)


def _members(edges: pa.Table | None, partitions: int) -> pa.Table:
    """From the converged stars (both directions): every node with its root, roots included."""
    u, v = unique_pairs(*_arrays(edges))
    leaf = u > v
    roots = np.unique(u[~leaf])
    node = np.concatenate([u[leaf], roots])
    root = np.concatenate([v[leaf], roots])
    return pa.table({"node": pa.array(node, pa.int64()), "root": pa.array(root, pa.int64()),
                     PART: pa.array(partition_of(node, partitions), pa.int32())})


def connected_components(edges: Parts, partitions: int, max_in_flight: int | None = None) -> tuple[Parts, int]:
    """`edges`: undirected edges as directed pairs both ways, partitioned by `u` (see
    `both_directions`). Returns (members partitioned by node: every node that has an edge, with
    the smallest node of its component as `root`; the number of rounds). `max_in_flight` caps
    the tasks running at once."""
    import ray

    last = None
    for rounds in range(1, MAX_ROUNDS + 1):
        large, stats = step(_large_star, [edges], [partitions, None], (partitions,), max_in_flight=max_in_flight)
        stats = pa.concat_tables(ray.get(stats))
        state = (int(pc.sum(stats["edges"]).as_py() or 0),
                 int(np.bitwise_xor.reduce(stats["digest"].to_numpy())) if stats.num_rows else 0)
        if state == last:
            break
        last = state
        (edges,) = step(_small_star, [large], [partitions], (partitions,), max_in_flight=max_in_flight)
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    (members,) = step(_members, [edges], [partitions], (partitions,), max_in_flight=max_in_flight)
    return members, rounds
