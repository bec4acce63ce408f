"""The shape every heuristic filter shares: measure signals per document, then apply bounds.

`signal` computes the filter's columns for the documents of the kinds it applies to (others get
nulls and pass). The declared rules decide (`Filter.decide`): they read only those columns and
the thresholds, so a threshold changes without recomputing a score (`sigma refilter`). Rules are
checked in order; the first one broken is the drop reason, and the detail names the column, its
value and the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stage import Filter, Resources, set_columns

PROSE_KINDS = ("doc", "web", "qa", "other")


class RuleFilter(Filter):
    """A filter whose signals are measured one document at a time by `measure`, for the kinds in
    `kinds`; its `rules` (pipeline.stage.Rule) decide."""

    signals: ClassVar[dict[str, pa.DataType]] = {}
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
        return set_columns(batch, {name: pa.array(values[name], dtype) for name, dtype in self.signals.items()})
