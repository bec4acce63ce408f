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
from typing import TYPE_CHECKING, ClassVar, NamedTuple

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


def set_columns(batch: pa.Table, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    """`batch` with each of `columns` appended in order, replacing a column of the same name (a
    signal computed again on a batch that already holds it, as a refilter's or a resumed run's)."""
    for name, column in columns.items():
        if name in batch.column_names:
            batch = batch.drop_columns([name])
        batch = batch.append_column(name, column)
    return batch


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


@dataclass(frozen=True)
class Rule:
    """One threshold of a filter: drop with `reason` when `column` is below (`min`) or above (`max`)
    the threshold held in the constructor keyword `option` (the rule's name); `None` or `False`
    there turns the rule off, `True` means the rule's `fixed` bound. `inclusive` also drops at the
    bound itself (FineWeb's `<=` and `>=`). `detail` is the ledger's detail, formatted with
    `column`, `value`, `sign` and `threshold`."""

    reason: str
    column: str
    bound: str  # "min" | "max"
    option: str
    fixed: float | None = None
    inclusive: bool = False
    detail: str = "{column}={value:.4g} {sign} {threshold:g}"

    def __post_init__(self):
        if self.bound not in ("min", "max"):
            raise ValueError(f"rule {self.reason}: bound is min or max, not {self.bound!r}")

    @property
    def sign(self) -> str:
        return ("<" if self.bound == "min" else ">") + ("=" if self.inclusive else "")


@dataclass(frozen=True)
class Score:
    """A column that reports draw as a distribution. Histograms span [0, `high`] (values outside
    fall in the end bins); integer columns (counts) use powers-of-two bins instead."""

    column: str
    high: float = 1.0


class Declared:
    """What a stage writes, declared so the engine's manifest, statistics, report and inspection
    read it without knowing the stage: `columns()` (added columns), `scores()` (columns drawn as
    distributions), `reasons()` (drop reasons), `duplicate_reasons` (reasons whose detail starts
    with the kept document's id), `tally_prefix` (integer columns named `<prefix><what>`, summed
    over the corpus), `requires()` (columns earlier stages must write), `check()` (options)."""

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()
    duplicate_reasons: ClassVar[tuple[str, ...]] = ()
    tally_prefix: ClassVar[str | None] = None

    def columns(self) -> dict[str, pa.DataType]:
        """The columns this stage adds to every document (part of the output schema)."""
        return {}

    def scores(self) -> list[Score]:
        return []

    def reasons(self) -> list[str]:
        """The drop reasons this stage writes (a reason may carry `:<detail>` after it)."""
        return list(self.duplicate_reasons)

    def requires(self) -> list[str]:
        """Columns this stage reads that an earlier stage must write; checked when the plan is built."""
        return []

    def check(self) -> None:
        """Raise ValueError for options that cannot work (a missing model), before any work starts."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Stage(Declared):
    """A map stage. Subclasses set `name`, may set `resources`, and implement `process`."""

    def setup(self) -> None:
        """Costly one-time set-up (loading a model), run once per worker before the first batch."""

    def start_unit(self, unit: int) -> None:
        """Called before the first batch of each work unit."""

    def process(self, batch: pa.Table) -> Result:
        raise NotImplementedError


class Filter(Stage):
    """A stage that computes signal columns, then decides per row: keep, or drop with a reason.

    A threshold filter declares its `rules` and implements only `signal`: `decide`, `thresholds`,
    `scores` and `reasons` follow from the rules. Rules are checked in order and the first one
    broken is the drop reason; a null (not measured) value passes. Where the filter has `kinds`
    (a list), rows of other kinds pass. `extra_scores` declares a score column's range, or a
    score column no rule reads."""

    rules: ClassVar[tuple[Rule, ...]] = ()
    extra_scores: ClassVar[tuple[Score, ...]] = ()
    kinds: list[str] | None = None
    # True when `signal` reads only the columns in `requires()` (no text, no model): decide-only
    # mode then recomputes it from the stored columns, and every option can change
    signal_reads_columns: ClassVar[bool] = False

    def decision_options(self) -> set[str]:
        """The constructor keywords `decide` reads (the rules' thresholds, `kinds`): the options
        that decide-only mode can change. Any other option changes the signal."""
        return {r.option for r in self.rules} | {"kinds"}

    def threshold(self, rule: Rule) -> float | None:
        value = getattr(self, rule.option)
        if value is None or value is False:
            return None
        return rule.fixed if value is True else value

    def thresholds(self) -> list[dict]:
        """Each active rule as {column, op, value, reason}, for the manifest and reports to draw."""
        return [{"column": r.column, "op": r.bound, "value": t, "reason": r.reason}
                for r in self.rules if (t := self.threshold(r)) is not None]

    def scores(self) -> list[Score]:
        declared = {s.column: s for s in self.extra_scores}
        for rule in self.rules:
            declared.setdefault(rule.column, Score(rule.column))
        return list(declared.values())

    def reasons(self) -> list[str]:
        return list(dict.fromkeys(r.reason for r in self.rules))

    def signal(self, batch: pa.Table) -> pa.Table:
        return batch

    def describe(self, rule: Rule, value: float, threshold: float, batch: pa.Table, row: int) -> str:
        return rule.detail.format(column=rule.column, value=value, sign=rule.sign, threshold=threshold)

    def decide(self, batch: pa.Table) -> tuple[list[str | None], list[str | None] | None]:
        n = batch.num_rows
        return self.apply_rules(batch, [None] * n, [None] * n)

    def apply_rules(self, batch: pa.Table, reasons: list[str | None], details: list[str | None]):
        """`reasons` and `details` with the first broken rule filled in for every row still open
        (a row that has a reason already keeps it)."""
        open_rows = np.array([r is None for r in reasons], bool)
        if self.kinds is not None:
            open_rows &= pc.is_in(batch["kind"], value_set=pa.array(self.kinds, pa.string())) \
                .fill_null(False).to_numpy(zero_copy_only=False)
        for rule in self.rules:
            bound = self.threshold(rule)
            if bound is None or not open_rows.any():
                continue
            col = batch[rule.column].cast(pa.float64()).to_numpy(zero_copy_only=False)
            limit = float(bound)
            with np.errstate(invalid="ignore"):
                if rule.inclusive:
                    broken = (col <= limit) if rule.bound == "min" else (col >= limit)
                else:
                    broken = (col < limit) if rule.bound == "min" else (col > limit)
            broken &= open_rows  # NaN (not measured) compares False: the row passes
            for i in np.nonzero(broken)[0]:
                reasons[i] = rule.reason
                details[i] = self.describe(rule, float(col[i]), bound, batch, int(i))
            open_rows &= ~broken
        return reasons, details

    def process(self, batch: pa.Table) -> Result:
        batch = self.signal(batch)
        reasons, details = self.decide(batch)
        return split_dropped(batch, reasons, details)


class DecideOnly(Filter):
    """A filter in decide-only mode (`sigma refilter`): its `decide` over the signal columns the
    documents already hold, no `signal` (unless it reads only columns), no set-up (no model is
    loaded), the same name, ledger reasons and declarations."""

    def __init__(self, inner: Filter):
        self.inner, self.name = inner, inner.name
        self.resources = Resources(batch_size=inner.resources.batch_size)

    def columns(self) -> dict[str, pa.DataType]:
        return self.inner.columns()

    def scores(self) -> list[Score]:
        return self.inner.scores()

    def reasons(self) -> list[str]:
        return self.inner.reasons()

    def thresholds(self) -> list[dict]:
        return self.inner.thresholds()

    def signal(self, batch: pa.Table) -> pa.Table:
        return self.inner.signal(batch) if self.inner.signal_reads_columns else batch

    def decide(self, batch: pa.Table):
        return self.inner.decide(batch)


class Decision(NamedTuple):
    """What a global stage's `decide` returns: the drops, and statistics of the decision (a dict of
    JSON values) that the manifest keeps under `stage_stats`, as given."""

    drops: ray.data.Dataset
    stats: dict


class GlobalStage(Declared):
    """A stage that decides over the whole corpus (exact and near dedupe).

    `signal` runs per batch at the end of the preceding map segment and adds the columns that
    `decide` reads. `decide` gets a Ray dataset of `signal_columns()` plus `id`, `_unit` and `_row`
    for every kept document, and returns a `Decision`: a dataset of drops with columns `_unit`,
    `_row`, `reason` and `detail`, and its statistics. No step may gather the corpus into one process.
    """

    name: ClassVar[str] = "global"

    def signal_columns(self) -> list[str]:
        return list(self.columns())

    def setup(self) -> None:
        pass

    def signal(self, batch: pa.Table) -> pa.Table:
        return batch

    def decide(self, ds: ray.data.Dataset, rows: int) -> Decision:
        raise NotImplementedError


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
