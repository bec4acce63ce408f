"""Parquet shard writing: zstd, bounded size, written under a temporary name and renamed.

Temporary files start with `.`, which pyarrow, DuckDB, Spark and `datasets` skip, so a reader
never sees half a shard.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import conform

ROW_GROUP_ROWS = 1024  # documents are large; small groups let readers stream and shard finely


@dataclass(frozen=True)
class FileRecord:
    path: str  # relative to the output root
    rows: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _publish(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_table_atomic(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, compression=compression, row_group_size=ROW_GROUP_ROWS)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ShardWriter:
    """Streams tables into `{prefix}-NNN.parquet` files of at most `max_rows` rows and about
    `max_bytes` bytes of in-memory Arrow data each."""

    def __init__(self, root: Path, directory: str, prefix: str, schema: pa.Schema,
                 max_rows: int = 1_000_000, max_bytes: int = 256 << 20, compression: str = "zstd",
                 row_group_rows: int = ROW_GROUP_ROWS):
        self.root, self.dir, self.prefix, self.schema = root, root / directory, prefix, schema
        self.row_group_rows = row_group_rows
        self.max_rows, self.max_bytes, self.compression = max_rows, max_bytes, compression
        self.records: list[FileRecord] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = self._bytes = 0
        self._path = self._tmp = None

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._path = self.dir / f"{self.prefix}-{len(self.records):03d}.parquet"
        self._tmp = _tmp_name(self._path)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression=self.compression)
        self._rows = self._bytes = 0

    def _close_file(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        _publish(self._tmp, self._path)
        self.records.append(FileRecord(str(self._path.relative_to(self.root)), self._rows,
                                       self._path.stat().st_size, sha256_file(self._path)))
        self._writer = None

    def write(self, table: pa.Table) -> None:
        table = conform(table, self.schema)
        while table.num_rows:
            if self._writer is None:
                self._open()
            per_row = max(1, table.nbytes // table.num_rows)
            room = min(self.max_rows - self._rows, max(1, (self.max_bytes - self._bytes) // per_row))
            part, table = table.slice(0, room), table.slice(room)
            self._writer.write_table(part, row_group_size=self.row_group_rows)
            self._rows += part.num_rows
            self._bytes += part.nbytes
            if self._rows >= self.max_rows or self._bytes >= self.max_bytes:
                self._close_file()

    def close(self) -> list[FileRecord]:
        self._close_file()
        return self.records

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
            self._writer = None
