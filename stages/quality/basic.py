"""A first filter that fits every kind of system text: length and share of printable characters."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stage import Filter, Resources

CHARS, LINES, PRINTABLE = "stats.chars", "stats.lines", "stats.printable"
NON_PRINTABLE = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x{fffd}]"


class BasicFilter(Filter):
    """Drops documents that are too short, too long, or mostly control characters and decoding
    replacement characters. Thresholds are keywords; `None` disables one. Signals are columns:
    `stats.chars`, `stats.lines`, `stats.printable` (share of printable characters)."""

    name = "basic_filter"
    resources = Resources(batch_size=4096)

    def __init__(self, min_chars: int | None = 20, max_chars: int | None = 10_000_000,
                 min_printable: float | None = 0.95):
        self.min_chars, self.max_chars, self.min_printable = min_chars, max_chars, min_printable

    def columns(self) -> dict[str, pa.DataType]:
        return {CHARS: pa.int64(), LINES: pa.int64(), PRINTABLE: pa.float32()}

    def thresholds(self) -> list[tuple[str, str, float]]:
        candidates = [(CHARS, "min", self.min_chars), (CHARS, "max", self.max_chars),
                      (PRINTABLE, "min", self.min_printable)]
        return [(c, op, v) for c, op, v in candidates if v is not None]

    def signal(self, batch: pa.Table) -> pa.Table:
        text = batch["text"]
        chars = pc.utf8_length(text).cast(pa.int64())
        lines = pc.add(pc.count_substring(text, "\n"), 1).cast(pa.int64())
        bad = pc.count_substring_regex(text, NON_PRINTABLE).cast(pa.float64())
        printable = pc.subtract(1.0, pc.divide(bad, pc.max_element_wise(chars.cast(pa.float64()), 1.0)))
        for name, col in ((CHARS, chars), (LINES, lines), (PRINTABLE, printable.cast(pa.float32()))):
            batch = batch.drop_columns([name]) if name in batch.column_names else batch
            batch = batch.append_column(name, col)
        return batch

    def decide(self, batch: pa.Table):
        chars = batch[CHARS].to_pylist()
        printable = batch[PRINTABLE].to_pylist()
        reasons, details = [], []
        for n, p in zip(chars, printable):
            if self.min_chars is not None and n < self.min_chars:
                reasons.append("too_short"), details.append(f"{n} chars < {self.min_chars}")
            elif self.max_chars is not None and n > self.max_chars:
                reasons.append("too_long"), details.append(f"{n} chars > {self.max_chars}")
            elif self.min_printable is not None and p < self.min_printable:
                reasons.append("low_printable"), details.append(f"{p:.3f} < {self.min_printable}")
            else:
                reasons.append(None), details.append(None)
        return reasons, details
