"""Text measures shared by the heuristic filters: words, lines, paragraphs, duplicated spans.

Words are whitespace-separated tokens with surrounding punctuation stripped (the Gopher and
FineWeb rules count words this way; a language-specific tokenizer changes the counts by a few
percent on English prose and is far slower).
"""

from __future__ import annotations

import re
import numpy as np

PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’…"
TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":")  # a line that ends a sentence (C4, FineWeb)
PARAGRAPH = re.compile(r"\n\s*\n")
# Control characters other than tab, newline and carriage return, and the decoding replacement
# character (a literal U+FFFD, so the same pattern works in Python's re and in Arrow's RE2)
NON_PRINTABLE = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\ufffd]"


def words(text: str) -> list[str]:
    out = []
    for token in text.split():
        token = token.strip(PUNCT)
        if token:
            out.append(token)
    return out


def lines(text: str) -> list[str]:
    """Non-blank lines, stripped."""
    return [s for s in (line.strip() for line in text.split("\n")) if s]


def paragraphs(text: str) -> list[str]:
    return [s for s in (p.strip() for p in PARAGRAPH.split(text)) if s]


def duplicated(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


MIX = np.uint64(0x9E3779B97F4A7C15)


def _ngram_hashes(tokens: list[str], sizes: range) -> dict[int, np.ndarray]:
    """64-bit hashes of every n-gram for each n in `sizes`, built one word at a time: exact ids
    per word, then a polynomial hash; a collision needs two different n-grams of one document to
    meet in 64 bits."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(t, len(index)) for t in tokens), np.uint64, len(tokens))
    with np.errstate(over="ignore"):
        v = (ids + np.uint64(1)) * MIX
        v ^= v >> np.uint64(29)
        h, out = v, {}
        for n in range(2, max(sizes) + 1):
            h = h[:-1] * MIX + v[n - 1:]
            if n in sizes:
                out[n] = h
    return out


def _window_chars(lengths: np.ndarray, n: int) -> np.ndarray:
    c = np.concatenate(([0], np.cumsum(lengths)))
    return c[n:] - c[:-n]


def top_ngram_char_shares(tokens: list[str], sizes: range) -> dict[int, float]:
    """For each n: share of word characters covered by the most frequent n-gram (Gopher, Rae et
    al. 2021), counted as its length times its occurrences."""
    out = {n: 0.0 for n in sizes}
    if len(tokens) < min(sizes):
        return out
    lengths = np.fromiter((len(t) for t in tokens), np.int64, len(tokens))
    total = max(int(lengths.sum()), 1)
    for n, h in _ngram_hashes(tokens, sizes).items():
        if len(h) == 0:
            continue
        _, first, counts = np.unique(h, return_index=True, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] > 1:
            out[n] = min(1.0, float(_window_chars(lengths, n)[first[top]] * counts[top]) / total)
    return out


def duplicate_ngram_char_shares(tokens: list[str], sizes: range) -> dict[int, float]:
    """For each n: share of word characters in n-grams that repeat an earlier n-gram (Gopher).

    A word covered by several repeats counts once, so the share never exceeds one.
    """
    out = {n: 0.0 for n in sizes}
    if len(tokens) < min(sizes):
        return out
    lengths = np.fromiter((len(t) for t in tokens), np.int64, len(tokens))
    total = max(int(lengths.sum()), 1)
    for n, h in _ngram_hashes(tokens, sizes).items():
        if len(h) == 0:
            continue
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        repeat = first[inverse] != np.arange(len(h))
        if not repeat.any():
            continue
        covered = np.zeros(len(tokens) + 1, np.int64)
        starts = np.nonzero(repeat)[0]
        np.add.at(covered, starts, 1)
        np.add.at(covered, starts + n, -1)
        out[n] = float(lengths[np.cumsum(covered[:-1]) > 0].sum()) / total
    return out
