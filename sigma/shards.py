"""Read curated shard folders: ``DIR/manifest.json`` beside ``DIR/shards/*.parquet``.

One row per document (``id``, ``text``, ``source``, ``uri``, ``kind``, ``meta``). Shards are read
in sorted file order, one row group at a time, so the corpus is never held in memory. A row group
is also the unit the trainer shuffles and splits across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class RowGroup:
    file_index: int
    index: int
    num_rows: int


@dataclass(frozen=True)
class ShardSet:
    root: Path
    files: tuple[Path, ...]

    @classmethod
    def open(cls, root: str | Path) -> "ShardSet":
        root = Path(root)
        files = tuple(sorted((root / "shards").glob("*.parquet")))
        if not files:
            raise FileNotFoundError(f"no shards in {root}/shards/*.parquet: is {root} a curate output folder?")
        return cls(root, files)

    @cached_property
    def row_groups(self) -> tuple[RowGroup, ...]:
        groups = []
        for file_index, path in enumerate(self.files):
            metadata = pq.ParquetFile(path).metadata
            groups += [RowGroup(file_index, i, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)]
        return tuple(groups)

    def read_row_group(self, group: RowGroup, columns: Sequence[str] = ("id", "text")) -> pa.Table:
        return pq.ParquetFile(self.files[group.file_index]).read_row_group(group.index, columns=list(columns))

    def iter_texts(self, batch_size: int = 1024) -> Iterator[str]:
        """Every document's text, in shard order, streamed in record batches."""
        for path in self.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["text"]):
                yield from batch.column(0).to_pylist()
