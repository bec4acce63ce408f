"""FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web for
the Finest Text Data at Scale", section 3.5 / Appendix: custom heuristic filters).

A document is dropped when at most 12% of its lines end in punctuation, at least 67% of its
lines are 30 characters or shorter, more than 10% of its characters sit in lines that repeat
an earlier line, or it has more than 0.3 newlines per word. Defaults are the published values.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.stage import Rule
from stages.quality.rule_filter import PROSE_KINDS, RuleFilter
from stages.quality.text_measures import duplicated, lines, words

P = "quality.fineweb."
PUNCT_END = (".", "!", "?", '"', "'", "”", "’", ":", ";", ")", "…")


class FineWebFilter(RuleFilter):
    """FineWeb rules: `fineweb_line_punct` (share of lines ending in punctuation at or under
    `min_line_punct`), `fineweb_short_lines` (share of lines of at most `short_line_chars`
    characters at or over `max_short_lines`), `fineweb_dup_line_chars`, `fineweb_newlines`
    (newlines per word over `max_newline_ratio`). `None` disables a rule."""

    name = "fineweb_filter"
    signals = {P + "line_punct": pa.float32(), P + "short_lines": pa.float32(),
               P + "dup_line_chars": pa.float32(), P + "newline_ratio": pa.float32()}
    rules = (
        Rule("fineweb_line_punct", P + "line_punct", "min", "min_line_punct", inclusive=True),
        Rule("fineweb_short_lines", P + "short_lines", "max", "max_short_lines", inclusive=True),
        Rule("fineweb_dup_line_chars", P + "dup_line_chars", "max", "max_dup_line_chars"),
        Rule("fineweb_newlines", P + "newline_ratio", "max", "max_newline_ratio"),
    )

    def __init__(self, min_line_punct: float | None = 0.12, max_short_lines: float | None = 0.67,
                 short_line_chars: int = 30, max_dup_line_chars: float | None = 0.1,
                 max_newline_ratio: float | None = 0.3, kinds: Sequence[str] | None = PROSE_KINDS):
        super().__init__(kinds)
        self.min_line_punct, self.max_short_lines = min_line_punct, max_short_lines
        self.short_line_chars = short_line_chars
        self.max_dup_line_chars, self.max_newline_ratio = max_dup_line_chars, max_newline_ratio

    def measure(self, text: str, kind=None, uri=None) -> dict[str, float]:
        rows = lines(text)
        n = max(len(rows), 1)
        _, dup_chars = duplicated(rows)
        return {
            P + "line_punct": sum(r.endswith(PUNCT_END) for r in rows) / n,
            P + "short_lines": sum(len(r) <= self.short_line_chars for r in rows) / n,
            P + "dup_line_chars": dup_chars / max(len(text.replace("\n", "")), 1),
            P + "newline_ratio": text.count("\n") / max(len(words(text)), 1),
        }
