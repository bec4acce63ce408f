"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models: Methods,
Analysis & Insights from Training Gopher", Appendix A.1.1, "MassiveWeb" quality filters).

Defaults are the published thresholds. They are rules for prose: by default they apply to the
kinds `doc`, `web`, `qa` and `other`; logs and configs get `system_checks` instead (a log of
2,000 lines from one daemon repeats itself by nature, and a config has few stop words).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pipeline.stage import Rule, Score
from stages.quality.rule_filter import PROSE_KINDS, RuleFilter
from stages.quality.text_measures import (duplicate_ngram_char_shares, duplicated, lines, paragraphs,
                                          top_ngram_char_shares, words)

STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "⁃", "-", "*")
P = "quality.gopher."
F32 = pa.float32()


class GopherQuality(RuleFilter):
    """Gopher quality rules: a document is dropped if it has fewer than 50 or more than 100,000
    words, a mean word length outside [3, 10], more than 0.1 hash or ellipsis symbols per word,
    more than 90% of lines starting with a bullet, more than 30% of lines ending with an
    ellipsis, fewer than 80% of words with an alphabetic character, or fewer than 2 of the stop
    words "the, be, to, of, and, that, have, with". Each threshold is a keyword; `None` disables."""

    name = "gopher_quality"
    signals = {P + "words": pa.int32(), P + "mean_word_length": F32, P + "symbol_ratio": F32,
               P + "bullet_lines": F32, P + "ellipsis_lines": F32, P + "alpha_words": F32,
               P + "stop_words": pa.int32()}
    rules = (
        Rule("gopher_short_doc", P + "words", "min", "min_words"),
        Rule("gopher_long_doc", P + "words", "max", "max_words"),
        Rule("gopher_short_words", P + "mean_word_length", "min", "min_mean_word_length"),
        Rule("gopher_long_words", P + "mean_word_length", "max", "max_mean_word_length"),
        Rule("gopher_symbol_ratio", P + "symbol_ratio", "max", "max_symbol_word_ratio"),
        Rule("gopher_bullet_lines", P + "bullet_lines", "max", "max_bullet_lines_ratio"),
        Rule("gopher_ellipsis_lines", P + "ellipsis_lines", "max", "max_ellipsis_lines_ratio"),
        Rule("gopher_below_alpha_threshold", P + "alpha_words", "min", "min_alpha_words_ratio"),
        Rule("gopher_enough_stop_words", P + "stop_words", "min", "min_stop_words"),
    )
    extra_scores = (Score(P + "mean_word_length", high=20),)

    def __init__(self, min_words: int | None = 50, max_words: int | None = 100_000,
                 min_mean_word_length: float | None = 3, max_mean_word_length: float | None = 10,
                 max_symbol_word_ratio: float | None = 0.1, max_bullet_lines_ratio: float | None = 0.9,
                 max_ellipsis_lines_ratio: float | None = 0.3, min_alpha_words_ratio: float | None = 0.8,
                 min_stop_words: int | None = 2, kinds: Sequence[str] | None = PROSE_KINDS):
        super().__init__(kinds)
        self.min_words, self.max_words = min_words, max_words
        self.min_mean_word_length, self.max_mean_word_length = min_mean_word_length, max_mean_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio, self.max_ellipsis_lines_ratio = max_bullet_lines_ratio, max_ellipsis_lines_ratio
        self.min_alpha_words_ratio, self.min_stop_words = min_alpha_words_ratio, min_stop_words

    def measure(self, text: str, kind=None, uri=None) -> dict[str, float]:
        tokens = words(text)
        n = max(len(tokens), 1)
        raw = text.split()
        rows = lines(text) or [""]
        symbols = text.count("#") + text.count("...") + text.count("…")
        return {
            P + "words": len(tokens),
            P + "mean_word_length": sum(map(len, tokens)) / n,
            P + "symbol_ratio": symbols / n,
            P + "bullet_lines": sum(r.startswith(BULLETS) for r in rows) / len(rows),
            P + "ellipsis_lines": sum(r.endswith(("...", "…")) for r in rows) / len(rows),
            P + "alpha_words": sum(any(c.isalpha() for c in w) for w in raw) / max(len(raw), 1),
            P + "stop_words": sum(w.lower() in STOP_WORDS for w in tokens),
        }


class GopherRepetition(RuleFilter):
    """Gopher repetition rules: a document is dropped when more than 30% of its lines (or
    paragraphs) repeat an earlier one, those repeats hold more than 20% of its characters, the
    most frequent 2-, 3- or 4-gram covers more than 20%, 18% or 16% of its word characters, or
    the repeated 5- to 10-grams cover more than 15%, 14%, 13%, 12%, 11% or 10% of them."""

    name = "gopher_repetition"
    TOP = range(2, 5)
    DUP = range(5, 11)
    signals = {P + "dup_lines": F32, P + "dup_paragraphs": F32, P + "dup_line_chars": F32,
               P + "dup_paragraph_chars": F32,
               **{f"{P}top_{n}gram": F32 for n in TOP}, **{f"{P}dup_{n}gram": F32 for n in DUP}}
    rules = (
        Rule("gopher_dup_lines", P + "dup_lines", "max", "max_dup_lines"),
        Rule("gopher_dup_paragraphs", P + "dup_paragraphs", "max", "max_dup_paragraphs"),
        Rule("gopher_dup_line_chars", P + "dup_line_chars", "max", "max_dup_line_chars"),
        Rule("gopher_dup_paragraph_chars", P + "dup_paragraph_chars", "max", "max_dup_paragraph_chars"),
        *(Rule(f"gopher_top_{n}gram", f"{P}top_{n}gram", "max", f"max_top_{n}gram") for n in TOP),
        *(Rule(f"gopher_dup_{n}gram", f"{P}dup_{n}gram", "max", f"max_dup_{n}gram") for n in DUP),
    )

    def __init__(self, max_dup_lines: float | None = 0.3, max_dup_paragraphs: float | None = 0.3,
                 max_dup_line_chars: float | None = 0.2, max_dup_paragraph_chars: float | None = 0.2,
                 max_top_2gram: float | None = 0.2, max_top_3gram: float | None = 0.18,
                 max_top_4gram: float | None = 0.16, max_dup_5gram: float | None = 0.15,
                 max_dup_6gram: float | None = 0.14, max_dup_7gram: float | None = 0.13,
                 max_dup_8gram: float | None = 0.12, max_dup_9gram: float | None = 0.11,
                 max_dup_10gram: float | None = 0.10, kinds: Sequence[str] | None = PROSE_KINDS):
        super().__init__(kinds)
        self.max_dup_lines, self.max_dup_paragraphs = max_dup_lines, max_dup_paragraphs
        self.max_dup_line_chars, self.max_dup_paragraph_chars = max_dup_line_chars, max_dup_paragraph_chars
        self.max_top_2gram, self.max_top_3gram, self.max_top_4gram = max_top_2gram, max_top_3gram, max_top_4gram
        self.max_dup_5gram, self.max_dup_6gram, self.max_dup_7gram = max_dup_5gram, max_dup_6gram, max_dup_7gram
        self.max_dup_8gram, self.max_dup_9gram, self.max_dup_10gram = max_dup_8gram, max_dup_9gram, max_dup_10gram

    def measure(self, text: str, kind=None, uri=None) -> dict[str, float]:
        chars = max(len(text), 1)
        rows, paras = lines(text), paragraphs(text)
        dup_l, dup_l_chars = duplicated(rows)
        dup_p, dup_p_chars = duplicated(paras)
        tokens = words(text)
        out = {
            P + "dup_lines": dup_l / max(len(rows), 1), P + "dup_paragraphs": dup_p / max(len(paras), 1),
            P + "dup_line_chars": dup_l_chars / chars, P + "dup_paragraph_chars": dup_p_chars / chars,
        }
        for n, share in top_ngram_char_shares(tokens, self.TOP).items():
            out[f"{P}top_{n}gram"] = share
        for n, share in duplicate_ngram_char_shares(tokens, self.DUP).items():
            out[f"{P}dup_{n}gram"] = share
        return out
