"""Parquet input: a user's corpus, read by row groups so large files split into work units."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import BASE_SCHEMA
from pipeline.source import documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.records import BadRecord, RecordSource, expand


class ParquetSource(RecordSource):
    """Parquet files, one document per row; rows without usable text are ledger entries."""

    kind = "parquet"

    def plan(self) -> list:
        units = []
        for path in expand(self.paths, (".parquet",)):
            try:
                meta = pq.ParquetFile(path).metadata
            except (OSError, pa.ArrowException) as exc:
                units.append([path, -1, str(exc)])
                continue
            start, size = 0, 0
            for g in range(meta.num_row_groups):
                size += meta.row_group(g).total_byte_size
                if size >= self.unit_bytes:
                    units.append([path, start, g + 1])
                    start, size = g + 1, 0
            if start < meta.num_row_groups or meta.num_row_groups == 0:
                units.append([path, start, meta.num_row_groups])
        return units

    def read(self, payload: list) -> Iterator[Result]:
        path, first, last = payload
        if first < 0:
            yield Result(BASE_SCHEMA.empty_table(), unreadable_table(
                [unreadable(self.mapper.source, f"file://{path}", "unreadable:corrupt_parquet", last)]))
            return
        f = pq.ParquetFile(path)
        for g in range(first, last):
            docs, bad = [], []
            rows = f.read_row_group(g).to_pylist()
            for i, record in enumerate(rows):
                where = f"{path}#rg{g}:{i}"
                try:
                    docs.append(self.mapper(record, where))
                except BadRecord as exc:
                    bad.append(unreadable(self.mapper.source, where, exc.reason, str(exc)))
            yield Result(documents(docs), unreadable_table(bad))
