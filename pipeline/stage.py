"""The stage protocol: a batch (an Arrow table) in, a batch out, with declared resources.

A stage maps a batch of documents to the documents it keeps, and the ones it drops with a
machine-readable reason. Filters split into "compute the signal" (columns kept in the shards) and
"decide" (a threshold over those columns), so thresholds change without recomputing scores
(Data-Juicer's compute_stats/process split; Dolma's attribute files).

Global stages (dedupe) need the whole corpus: they compute a per-document signal inside the
preceding map segment, then decide over a Ray dataset of those signals through shuffles, and their
decisions are applied per work unit in the segment that follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import ray.data

DROP_FIELDS = [pa.field("reason", pa.string()), pa.field("detail", pa.string())]


@dataclass(frozen=True)
class Resources:
    """What one copy of a stage needs; the runner turns it into Ray Data `map_batches` arguments."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 2048  # rows per call
    concurrency: int | None = None  # copies at once; None lets Ray decide
    actor: bool = False  # costly setup (a model): keep it in a pool of actors


@dataclass
class Result:
    kept: pa.Table
    dropped: pa.Table | None = None  # the dropped rows plus `reason` and `detail` columns
    counts: dict[str, int] | None = None  # stage-specific counters (e.g. redactions by type), summed in the manifest


def split_dropped(batch: pa.Table, reasons, details=None) -> Result:
    """Split `batch` by `reasons` (None keeps the row) into kept rows and dropped rows."""
    reasons = pa.array(reasons, pa.string())
    drop = reasons.is_valid()
    if not pc.any(drop).as_py():
        return Result(batch)
    keep = pc.invert(drop)
    dropped = batch.filter(drop)
    dropped = dropped.append_column(DROP_FIELDS[0], reasons.filter(drop))
    detail = pa.nulls(len(batch), pa.string()) if details is None else pa.array(details, pa.string())
    dropped = dropped.append_column(DROP_FIELDS[1], detail.filter(drop))
    return Result(batch.filter(keep), dropped)


class Stage:
    """A map stage. Subclasses set `name`, may set `resources`, and implement `process`."""

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()

    def columns(self) -> dict[str, pa.DataType]:
        """The columns this stage adds to every document (part of the output schema)."""
        return {}

    def setup(self) -> None:
        """Costly one-time set-up (loading a model), run once per worker before the first batch."""

    def start_unit(self, unit: int) -> None:
        """Called before the first batch of each work unit."""

    def process(self, batch: pa.Table) -> Result:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Filter(Stage):
    """A stage that computes signal columns, then decides per row: keep, or drop with a reason."""

    def thresholds(self) -> list[tuple[str, str, float]]:
        """(column, "min" or "max", value) for each active threshold, for reports to draw."""
        return []

    def signal(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, batch: pa.Table) -> tuple[list[str | None], list[str | None] | None]:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> Result:
        batch = self.signal(batch)
        reasons, details = self.decide(batch)
        return split_dropped(batch, reasons, details)


class GlobalStage:
    """A stage that decides over the whole corpus (exact and near dedupe).

    `signal` runs per batch at the end of the preceding map segment and adds the columns that
    `decide` reads. `decide` gets a Ray dataset of `signal_columns()` plus `id`, `_unit` and `_row`
    for every kept document, and returns a dataset of drops with columns `_unit`, `_row`, `reason`
    and `detail`. No step may gather the corpus into one process.
    """

    name: ClassVar[str] = "global"
    resources: ClassVar[Resources] = Resources()

    def columns(self) -> dict[str, pa.DataType]:
        return {}

    def signal_columns(self) -> list[str]:
        return list(self.columns())

    def setup(self) -> None:
        pass

    def signal(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, ds: ray.data.Dataset, rows: int) -> ray.data.Dataset:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def partitions_for(rows: int, rows_per_partition: int = 1_000_000) -> int:
    """How many shuffle partitions keep each one under `rows_per_partition` rows."""
    return max(1, -(-rows // rows_per_partition))


def first_of_groups(keys: np.ndarray) -> np.ndarray:
    """For keys sorted so equal keys are adjacent: the index of the first row of each row's group."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.ones(n, bool)
    starts[1:] = keys[1:] != keys[:-1]
    return np.maximum.accumulate(np.where(starts, np.arange(n), 0))
