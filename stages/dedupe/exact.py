"""Exact dedupe on normalised text, distributed through Ray with a deterministic keeper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from pipeline.manifest import output_shard_files, read_manifest
from pipeline.stage import Decision, GlobalStage, Resources, first_of_groups, partitions_for

HASH = "hash.exact"


def normalise(text: pa.ChunkedArray | pa.Array, lowercase: bool) -> pa.Array:
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s+", " "))
    return pc.utf8_lower(text) if lowercase else text


def _add_partition(batch: pa.Table, partitions: int) -> pa.Table:
    head = np.array([int(h[:8], 16) for h in batch[HASH].to_pylist()], dtype=np.int64)
    return batch.append_column("_p", pa.array(head % partitions, pa.int32()))


def _keepers(group: pa.Table) -> pa.Table:
    """Within one partition: the first document of each hash (by input order) is kept. Documents
    of existing outputs (negative units) come first and are never dropped."""
    group = group.sort_by([(HASH, "ascending"), ("_unit", "ascending"), ("_row", "ascending"), ("id", "ascending")])
    hashes = np.asarray(group[HASH].to_pylist(), dtype=object)
    first = first_of_groups(hashes)
    dup = (first != np.arange(len(first))) & (group["_unit"].to_numpy() >= 0)
    ids = group["id"].to_numpy(zero_copy_only=False)
    return pa.table({
        "_unit": group["_unit"].filter(pa.array(dup)), "_row": group["_row"].filter(pa.array(dup)),
        "reason": pa.array(["exact_duplicate"] * int(dup.sum()), pa.string()),
        "detail": pa.array(ids[first[dup]], pa.string()),
    })


class ExactDedupe(GlobalStage):
    """Drops documents whose normalised text (whitespace collapsed, optionally lower-cased) equals
    an earlier document's; the ledger names the kept document. The keeper is the first in input
    order (unit, then row), whatever the number of workers.

    `existing`: curate output folders whose documents count as earlier than every input (dedupe of
    a new round against the kept corpus): they are never dropped, and an input equal to one of them
    is dropped with that document's id. Their `hash.exact` column is read where they were deduped
    with the same `lowercase`; otherwise their text is hashed again."""

    name = "exact_dedupe"
    duplicate_reasons = ("exact_duplicate",)
    resources = Resources(batch_size=4096)

    def __init__(self, lowercase: bool = False, rows_per_partition: int = 2_000_000,
                 existing: list[str] | None = None):
        self.lowercase = lowercase
        self.rows_per_partition = rows_per_partition
        self.existing = [str(Path(e).absolute()) for e in existing or []]

    def check(self) -> None:
        for folder in self.existing:
            output_shard_files(folder)

    def columns(self) -> dict[str, pa.DataType]:
        return {HASH: pa.string()}

    def signal(self, batch: pa.Table) -> pa.Table:
        norm = normalise(batch["text"], self.lowercase)
        hashes = [xxhash.xxh3_128_hexdigest(t.encode()) for t in norm.to_pylist()]
        return batch.append_column(HASH, pa.array(hashes, pa.string()))

    def _existing_rows(self):
        """The existing outputs' documents as (id, `_unit` < 0, `_row`, hash) rows, and their count."""
        import ray.data

        parts, total = [], 0
        for index, folder in enumerate(self.existing):
            shards = output_shard_files(folder)
            total += sum(rows for _, rows in shards)
            if not shards:
                continue
            files = [path for path, _ in shards]
            ours = [s for s in read_manifest(folder)["config"].get("stages", []) if s.get("name") == self.name]
            same = bool(ours) and ours[-1].get("options", {}).get("lowercase", False) == self.lowercase
            columns = ["id", HASH] if same and HASH in pq.read_schema(files[0]).names else ["id", "text"]
            unit = index - len(self.existing)  # the first folder listed is the earliest
            parts.append(ray.data.read_parquet(files, columns=columns).map_batches(
                _as_existing, fn_args=(unit, self.lowercase), batch_format="pyarrow"))
        if not parts:
            return None, 0
        return (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]), total

    def decide(self, ds, rows: int):
        existing, existing_rows = self._existing_rows() if self.existing else (None, 0)
        if existing is not None:
            ds = ds.map_batches(_order_columns, batch_format="pyarrow").union(existing)
        partitions = partitions_for(rows + existing_rows, self.rows_per_partition)
        keyed = ds.map_batches(_add_partition, fn_args=(partitions,), batch_format="pyarrow")
        drops = keyed.groupby("_p", num_partitions=partitions).map_groups(_keepers, batch_format="pyarrow")
        return Decision(drops, {"partitions": partitions, "existing_documents": existing_rows})


KEY_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("_unit", pa.int32()), pa.field("_row", pa.int64()),
                        pa.field(HASH, pa.string())])


def _order_columns(batch: pa.Table) -> pa.Table:
    return batch.select(KEY_SCHEMA.names).cast(KEY_SCHEMA)


def _as_existing(batch: pa.Table, unit: int, lowercase: bool) -> pa.Table:
    if HASH in batch.column_names:
        hashes = batch[HASH]
    else:
        hashes = pa.array([xxhash.xxh3_128_hexdigest(t.encode())
                           for t in normalise(batch["text"].fill_null(""), lowercase).to_pylist()], pa.string())
    n = batch.num_rows
    return pa.Table.from_arrays([batch["id"], pa.array(np.full(n, unit, np.int32)), pa.array(np.zeros(n, np.int64)),
                                 hashes], schema=KEY_SCHEMA)
