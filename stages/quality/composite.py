"""A composite score: a weighted mean of score columns that earlier stages wrote (`domain.score`,
`quality.score`, `lang.score`, ...), and one threshold over it. Users set the weights; like every
decision here it reads columns only, so new weights need no new scores (`sigma refilter`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipeline.stage import Filter, Resources, Rule, set_columns

COMPOSITE = "score.composite"


class CompositeScore(Filter):
    """`score.composite` = sum(weight * column) / sum(weight) over the columns in `weights` that a
    document has (a null column leaves the mean, it does not count as zero). Drops documents under
    `min_score` (reason `low_composite_score`); `None` keeps all. `kinds` limits the decision."""

    name = "composite_score"
    resources = Resources(batch_size=4096)
    signal_reads_columns = True
    rules = (Rule("low_composite_score", COMPOSITE, "min", "min_score", detail="{value:.3f} < {threshold}"),)

    def __init__(self, weights: dict[str, float], min_score: float | None = None,
                 kinds: Sequence[str] | None = None):
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("weights: a mapping of score columns to non-negative weights, not all zero")
        self.weights, self.min_score = dict(weights), min_score
        self.kinds = None if kinds is None else list(kinds)

    def columns(self) -> dict[str, pa.DataType]:
        return {COMPOSITE: pa.float32()}

    def requires(self) -> list[str]:
        return list(self.weights)

    def signal(self, batch: pa.Table) -> pa.Table:
        missing = [c for c in self.weights if c not in batch.column_names]
        if missing:
            raise ValueError(f"composite_score needs the column(s) {', '.join(missing)}: put the stages that "
                             "write them earlier in the job")
        total = np.zeros(batch.num_rows)
        weight = np.zeros(batch.num_rows)
        for column, w in self.weights.items():
            values = batch[column].cast(pa.float64()).to_numpy(zero_copy_only=False)
            ok = ~np.isnan(values)
            total[ok] += w * values[ok]
            weight[ok] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(weight > 0, total / weight, np.nan)
        return set_columns(batch, {COMPOSITE: pa.array(score, pa.float32(), from_pandas=True)})
