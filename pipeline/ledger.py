"""The ledger: every dropped document with its stage and reason, always in full; and the rejects
dataset, the dropped rows with their text (all, a deterministic sample, or none), like DataTrove's
exclusion writers."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.schema import BASE_FIELDS, ORDER_FIELDS
from pipeline.shards import FileRecord, ShardWriter

LEDGER_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("source", pa.string()),
    pa.field("uri", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("bytes", pa.int64()),
] + ORDER_FIELDS)
REJECTS_SCHEMA = pa.schema(list(LEDGER_SCHEMA) + [f for f in BASE_FIELDS if f.name in ("text", "meta")])


def sampled(ids: pa.Array, rate: float) -> pa.Array:
    """A deterministic sample: a row is in it when the hash of its id falls under `rate`."""
    cut = int(rate * 2**64)
    return pa.array([xxhash.xxh3_64_intdigest(i.encode()) < cut for i in ids.to_pylist()], pa.bool_())


class LedgerWriter:
    def __init__(self, root: Path, prefix: str, rejects: str = "all", rejects_rate: float = 0.1):
        self.ledger = ShardWriter(root, "ledger", prefix, LEDGER_SCHEMA)
        self.rejects = None if rejects == "none" else ShardWriter(root, "rejects", prefix, REJECTS_SCHEMA)
        self.rate = 1.0 if rejects == "all" else rejects_rate

    def write(self, stage: str, dropped: pa.Table) -> None:
        n = dropped.num_rows
        if n == 0:
            return
        text = dropped["text"]
        nbytes = pc.binary_length(text.cast(pa.large_binary())) if text.null_count < n else pa.nulls(n, pa.int64())
        dropped = dropped.append_column("stage", pa.array([stage] * n, pa.string()))
        dropped = dropped.append_column("bytes", nbytes.cast(pa.int64()))
        self.ledger.write(dropped)
        if self.rejects is not None:
            self.rejects.write(dropped if self.rate >= 1.0 else dropped.filter(sampled(dropped["id"], self.rate)))

    def close(self) -> tuple[list[FileRecord], list[FileRecord]]:
        return self.ledger.close(), self.rejects.close() if self.rejects else []

    def abort(self) -> None:
        self.ledger.abort()
        if self.rejects:
            self.rejects.abort()
