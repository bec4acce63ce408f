"""The shape every heuristic filter shares: measure signals per document, then apply bounds.

`signal` computes the filter's columns for the documents of the kinds it applies to (others get
nulls and pass). `decide` reads only those columns and the thresholds, so a threshold changes
without recomputing a score (`sigma refilter`). Rules are checked in order; the first one broken
is the drop reason, and the detail names the column, its value and the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stage import Filter, Resources

PROSE_KINDS = ("doc", "web", "qa", "other")


@dataclass(frozen=True)
class Rule:
    """Drop with `reason` when `column` is below (`min`) or above (`max`) the threshold held in the
    constructor keyword `option`. A keyword that is `True` means the rule's `fixed` bound.
    `inclusive` also drops at the bound itself (FineWeb's `<=` and `>=`)."""

    reason: str
    column: str
    bound: str  # "min" | "max"
    option: str
    fixed: float | None = None
    inclusive: bool = False


class RuleFilter(Filter):
    signals: ClassVar[dict[str, pa.DataType]] = {}
    rules: ClassVar[tuple[Rule, ...]] = ()
    resources = Resources(batch_size=1024)

    def __init__(self, kinds: Sequence[str] | None = PROSE_KINDS):
        self.kinds = None if kinds is None else list(kinds)

    def columns(self) -> dict[str, pa.DataType]:
        return dict(self.signals)

    def measure(self, text: str, kind: str | None, uri: str | None) -> dict[str, float]:
        """The signals of one document, keyed by column name."""
        raise NotImplementedError

    def applies(self, batch: pa.Table) -> list[bool]:
        if self.kinds is None:
            return [True] * batch.num_rows
        return pc.is_in(batch["kind"], value_set=pa.array(self.kinds, pa.string())).fill_null(False).to_pylist()

    def signal(self, batch: pa.Table) -> pa.Table:
        values: dict[str, list] = {name: [None] * batch.num_rows for name in self.signals}
        rows = zip(self.applies(batch), batch["text"].to_pylist(), batch["kind"].to_pylist(), batch["uri"].to_pylist())
        for i, (ok, text, kind, uri) in enumerate(rows):
            if ok and text is not None:
                for name, value in self.measure(text, kind, uri).items():
                    values[name][i] = value
        for name, dtype in self.signals.items():
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(pa.field(name, dtype), pa.array(values[name], dtype))
        return batch

    def threshold(self, rule: Rule) -> float | None:
        value = getattr(self, rule.option)
        if value is None or value is False:
            return None
        return rule.fixed if value is True else float(value)

    def decide(self, batch: pa.Table):
        n = batch.num_rows
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        open_rows = np.ones(n, bool)
        for rule in self.rules:
            bound = self.threshold(rule)
            if bound is None or not open_rows.any():
                continue
            col = batch[rule.column].cast(pa.float64()).to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                if rule.inclusive:
                    broken = (col <= bound) if rule.bound == "min" else (col >= bound)
                else:
                    broken = (col < bound) if rule.bound == "min" else (col > bound)
            broken &= open_rows  # NaN (not measured) compares False: the row passes
            sign = ("<" if rule.bound == "min" else ">") + ("=" if rule.inclusive else "")
            for i in np.nonzero(broken)[0]:
                reasons[i] = rule.reason
                details[i] = f"{rule.column}={col[i]:.4g} {sign} {bound:g}"
            open_rows &= ~broken
        return reasons, details
