"""Distributed connected components against a union-find, on real local Ray."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.components import both_directions, connected_components
from pipeline.exchange import split_by_partition


def _union_find(u, v) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


@pytest.mark.parametrize("partitions,max_in_flight", [(1, None), (3, None), (4, 1)])
def test_components_equal_union_find(ray_local, partitions, max_in_flight):
    rng = np.random.default_rng(partitions)
    u = rng.integers(0, 3000, 2500) * 7 - 5000  # negative keys too (documents of an existing corpus)
    v = rng.integers(0, 3000, 2500) * 7 - 5000
    chain = np.arange(400) * 11 + 50_000  # a long path: the worst case for label propagation
    u, v = np.r_[u, chain[:-1]], np.r_[v, chain[1:]]
    keep = u != v
    u, v = u[keep], v[keep]
    parts = [[] for _ in range(partitions)]
    for piece in np.array_split(np.arange(len(u)), 5):
        table = both_directions(u[piece], v[piece], partitions)
        for p, t in enumerate(split_by_partition(table, partitions)):
            parts[p].append(ray_local.put(t))
    members, rounds = connected_components(parts, partitions, max_in_flight=max_in_flight)
    got = {}
    for part in members:
        for ref in part:
            t = ray_local.get(ref)
            for node, root in zip(t["node"].to_pylist(), t["root"].to_pylist()):
                assert node not in got
                got[node] = root
    assert got == _union_find(u, v)
    assert rounds < 20
