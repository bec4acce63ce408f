"""A finished curate output as input: its shards, as its manifest lists them, with every column
they hold (the stored signals). `sigma refilter` reads its parent this way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import ConfigError
from pipeline.manifest import output_shard_files, read_manifest
from pipeline.schema import BASE_SCHEMA
from pipeline.source import Source
from pipeline.stage import Result


class CurateOutputSource(Source):
    """The kept documents of the curate output at `path`, read by row groups in the manifest's file
    order, so a parent's unit order carries over. `config_hash`, when given, must be the output's:
    an output curated again since is refused, not read as the one a job was planned on."""

    kind = "curate_output"

    def __init__(self, name: str, path: str, config_hash: str | None = None, unit_mb: float = 64):
        self.name, self.path, self.config_hash = name, str(path), config_hash
        self.unit_bytes = int(unit_mb * (1 << 20))

    def files(self) -> list[tuple[str, int]]:
        """The output's shards that hold documents (`pipeline.manifest.output_shard_files`), once its
        config_hash is checked."""
        try:
            manifest = read_manifest(Path(self.path))
            files = output_shard_files(self.path)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        if self.config_hash is not None and manifest.get("config_hash") != self.config_hash:
            raise ConfigError(f"{self.path}: its config_hash is {manifest.get('config_hash')}, not "
                              f"{self.config_hash}: the output was curated again since")
        return files

    def columns(self) -> dict[str, pa.DataType]:
        files = self.files()
        if not files:
            return {}
        return {f.name: f.type for f in pq.read_schema(files[0][0]) if f.name not in BASE_SCHEMA.names}

    def plan(self) -> list:
        units = []
        for path, rows in self.files():
            try:
                meta = pq.ParquetFile(path).metadata
            except (OSError, pa.ArrowException) as exc:  # listed and present, but not Parquet
                raise ConfigError(f"{path}: listed in {self.path}'s manifest but not readable ({exc}); "
                                  f"`sigma verify {self.path}` checks every file") from None
            if meta.num_rows != rows:
                raise ConfigError(f"{path}: {meta.num_rows} rows, its manifest says {rows}; "
                                  f"`sigma verify {self.path}` checks every file")
            start, size = 0, 0
            for g in range(meta.num_row_groups):
                size += meta.row_group(g).total_byte_size
                if size >= self.unit_bytes:
                    units.append([str(path), start, g + 1])
                    start, size = g + 1, 0
            if start < meta.num_row_groups:
                units.append([str(path), start, meta.num_row_groups])
        return units

    def read(self, payload: list) -> Iterator[Result]:
        path, first, last = payload
        f = pq.ParquetFile(path)
        for g in range(first, last):
            yield Result(f.read_row_group(g))
