"""Decisions of a global stage, stored per work unit and applied to that unit's rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.shards import write_table_atomic
from pipeline.stage import Result, Stage, split_dropped

DECISION_SCHEMA = pa.schema([
    pa.field("_unit", pa.int32()), pa.field("_row", pa.int64()),
    pa.field("reason", pa.string()), pa.field("detail", pa.string()),
])


def decision_path(directory: Path, unit: int) -> Path:
    return directory / f"u{unit:05d}.parquet"


def write_unit_decisions(group: pa.Table, directory: str) -> pa.Table:
    """Ray `map_groups` function: write the decisions of one unit, return a one-row summary."""
    unit = group["_unit"][0].as_py()
    table = group.select([f.name for f in DECISION_SCHEMA]).cast(DECISION_SCHEMA)
    table = table.sort_by("_row")
    write_table_atomic(table, decision_path(Path(directory), unit))
    return pa.table({"_unit": pa.array([unit], pa.int32()), "rows": [table.num_rows]})


class ApplyDecisions(Stage):
    """Drops the rows a global stage decided against; reported under that stage's name."""

    def __init__(self, stage_name: str, directory: Path):
        self.name = stage_name
        self.directory = directory
        self._rows = self._reasons = self._details = None

    def start_unit(self, unit: int) -> None:
        path = decision_path(self.directory, unit)
        if path.exists():
            t = pq.read_table(path)
            self._rows, self._reasons, self._details = t["_row"], t["reason"], t["detail"]
        else:
            self._rows = None

    def process(self, batch: pa.Table) -> Result:
        if self._rows is None:
            return Result(batch)
        idx = pc.index_in(batch["_row"], value_set=self._rows)
        return split_dropped(batch, pc.take(self._reasons, idx), pc.take(self._details, idx))
