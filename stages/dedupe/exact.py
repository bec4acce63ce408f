"""Exact dedupe on normalised text, distributed through Ray with a deterministic keeper."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.stage import GlobalStage, Resources, first_of_groups, partitions_for

HASH = "hash.exact"


def normalise(text: pa.ChunkedArray | pa.Array, lowercase: bool) -> pa.Array:
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return pc.utf8_lower(text) if lowercase else text


def _add_partition(batch: pa.Table, partitions: int) -> pa.Table:
    head = np.array([int(h[:8], 16) for h in batch[HASH].to_pylist()], dtype=np.int64)
    return batch.append_column("_p", pa.array(head % partitions, pa.int32()))


def _keepers(group: pa.Table) -> pa.Table:
    """Within one partition: the first document of each hash (by input order) is kept."""
    group = group.sort_by([(HASH, "ascending"), ("_unit", "ascending"), ("_row", "ascending")])
    hashes = np.asarray(group[HASH].to_pylist(), dtype=object)
    first = first_of_groups(hashes)
    dup = first != np.arange(len(first))
    ids = group["id"].to_numpy(zero_copy_only=False)
    return pa.table({
        "_unit": group["_unit"].filter(pa.array(dup)), "_row": group["_row"].filter(pa.array(dup)),
        "reason": pa.array(["exact_duplicate"] * int(dup.sum()), pa.string()),
        "detail": pa.array(ids[first[dup]], pa.string()),
    })


class ExactDedupe(GlobalStage):
    """Drops documents whose normalised text (whitespace collapsed, optionally lower-cased) equals
    an earlier document's; the ledger names the kept document. The keeper is the first in input
    order (unit, then row), whatever the number of workers."""

    name = "exact_dedupe"
    resources = Resources(batch_size=4096)

    def __init__(self, lowercase: bool = False, rows_per_partition: int = 2_000_000):
        self.lowercase = lowercase
        self.rows_per_partition = rows_per_partition

    def columns(self) -> dict[str, pa.DataType]:
        return {HASH: pa.string()}

    def signal(self, batch: pa.Table) -> pa.Table:
        norm = normalise(batch["text"], self.lowercase)
        hashes = [xxhash.xxh3_128_hexdigest(t.encode()) for t in norm.to_pylist()]
        return batch.append_column(HASH, pa.array(hashes, pa.string()))

    def decide(self, ds, rows: int):
        partitions = partitions_for(rows, self.rows_per_partition)
        keyed = ds.map_batches(_add_partition, fn_args=(partitions,), batch_format="pyarrow")
        return keyed.groupby("_p", num_partitions=partitions).map_groups(_keepers, batch_format="pyarrow")
