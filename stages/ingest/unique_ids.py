"""Ids unique in every output: the first row with an id (in input order: unit, then row) is kept,
every later row with that id is dropped as `duplicate_id`, with the kept row's uri as detail.

Distributed like exact dedupe: rows are hash-partitioned by id through a Ray shuffle, and each
partition finds its repeats, so no process holds more than one partition of ids.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import xxhash

from pipeline.stage import Decision, GlobalStage, Resources, first_of_groups, partitions_for


def _add_partition(batch: pa.Table, partitions: int) -> pa.Table:
    heads = np.array([xxhash.xxh64_intdigest(i.encode("utf-8", "surrogatepass")) for i in batch["id"].to_pylist()],
                     dtype=np.uint64)
    return batch.select(["id", "_unit", "_row", "uri"]).append_column(
        "_p", pa.array((heads % np.uint64(partitions)).astype(np.int32)))


def _repeats(group: pa.Table) -> pa.Table:
    group = group.sort_by([("id", "ascending"), ("_unit", "ascending"), ("_row", "ascending")])
    ids = np.asarray(group["id"].to_pylist(), dtype=object)
    first = first_of_groups(ids)
    later = first != np.arange(len(first))
    units, rows, uris = group["_unit"].to_numpy(), group["_row"].to_numpy(), group["uri"].to_pylist()
    detail = [f"kept {uris[f]}" for f in first[later]]
    return pa.table({"_unit": pa.array(units[later], pa.int32()), "_row": pa.array(rows[later], pa.int64()),
                     "reason": pa.array(["duplicate_id"] * len(detail), pa.string()),
                     "detail": pa.array(detail, pa.string())})


class UniqueIds(GlobalStage):
    """Drops every row whose id an earlier row already has (reason `duplicate_id`). The runner
    puts it first in every job, so the shards, the ledger and the rejects each hold an id once."""

    name = "unique_ids"
    resources = Resources(batch_size=65536)

    def __init__(self, rows_per_partition: int = 4_000_000):
        self.rows_per_partition = rows_per_partition

    def signal_columns(self) -> list[str]:
        return ["uri"]

    def decide(self, ds, rows: int):
        partitions = partitions_for(rows, self.rows_per_partition)
        keyed = ds.map_batches(_add_partition, fn_args=(partitions,), batch_format="pyarrow")
        drops = keyed.groupby("_p", num_partitions=partitions).map_groups(_repeats, batch_format="pyarrow")
        return Decision(drops, {"partitions": partitions})
