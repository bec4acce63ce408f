"""Read curated shard folders: ``DIR/manifest.json`` beside ``DIR/shards/*.parquet``.

One row per document (``id``, ``text``, ``source``, ``uri``, ``kind``, ``meta``). Shards are read
in sorted file order, one row group at a time, so the corpus is never held in memory. A row group
is also the unit the trainer shuffles and splits across ranks. Where the folder has a manifest,
every shard is checked against its sha256 when the set is opened, so a changed or corrupt shard
stops training with its name instead of training on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq



class CorruptShardError(ValueError):
    """A shard whose bytes differ from what its run's manifest recorded."""


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
    def open(cls, root: str | Path, verify: bool = True) -> "ShardSet":
        root = Path(root)
        files = tuple(sorted((root / "shards").glob("*.parquet")))
        if not files:
            raise FileNotFoundError(f"no shards in {root}/shards/*.parquet: is {root} a curate output folder?")
        if verify and (root / "manifest.json").exists():
            _check_against_manifest(root, files)
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


def _check_against_manifest(root: Path, files: tuple[Path, ...]) -> None:
    records = {r["path"]: r for r in json.loads((root / "manifest.json").read_text())["files"]}
    for path in files:
        record = records.get(str(path.relative_to(root)))
        if record is None:
            raise CorruptShardError(f"{path}: not in {root / 'manifest.json'} (added after the run?)")
        if path.stat().st_size != record["bytes"] or sha256_file(path) != record["sha256"]:
            raise CorruptShardError(f"{path}: its sha256 differs from the manifest's, the shard was changed or is "
                                    f"corrupt; `sigma verify {root}` lists every problem")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
