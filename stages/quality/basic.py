"""A first filter that fits every kind of system text: length and share of printable characters."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stage import Filter, Resources, Rule, set_columns
from stages.quality.text_measures import NON_PRINTABLE

CHARS, LINES, PRINTABLE = "stats.chars", "stats.lines", "stats.printable"


class BasicFilter(Filter):
    """Drops documents that are too short, too long, or mostly control characters and decoding
    replacement characters. Thresholds are keywords; `None` disables one. Signals are columns:
    `stats.chars`, `stats.lines`, `stats.printable` (share of printable characters)."""

    name = "basic_filter"
    resources = Resources(batch_size=4096)
    rules = (
        Rule("too_short", CHARS, "min", "min_chars", detail="{value:.0f} chars < {threshold}"),
        Rule("too_long", CHARS, "max", "max_chars", detail="{value:.0f} chars > {threshold}"),
        Rule("low_printable", PRINTABLE, "min", "min_printable", detail="{value:.3f} < {threshold}"),
    )

    def __init__(self, min_chars: int | None = 20, max_chars: int | None = 10_000_000,
                 min_printable: float | None = 0.95):
        self.min_chars, self.max_chars, self.min_printable = min_chars, max_chars, min_printable

    def columns(self) -> dict[str, pa.DataType]:
        return {CHARS: pa.int64(), LINES: pa.int64(), PRINTABLE: pa.float32()}

    def signal(self, batch: pa.Table) -> pa.Table:
        text = batch["text"]
        chars = pc.utf8_length(text).cast(pa.int64())
        lines = pc.add(pc.count_substring(text, "\n"), 1).cast(pa.int64())
        bad = pc.count_substring_regex(text, NON_PRINTABLE).cast(pa.float64())
        printable = pc.subtract(1.0, pc.divide(bad, pc.max_element_wise(chars.cast(pa.float64()), 1.0)))
        return set_columns(batch, {CHARS: chars, LINES: lines, PRINTABLE: printable.cast(pa.float32())})
