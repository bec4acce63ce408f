"""Word n-gram overlap between texts and a set of evaluation items (GPT-3, Brown et al. 2020,
Appendix C; Llama 2): text is lower-cased and split into word and punctuation tokens, and each run
of ``n`` tokens is hashed to 64 bits. The curation's ``decontaminate`` stage and the eval suite's
contamination check share this index, so both call the same text an overlap.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash

TOKEN = re.compile(r"\w+|[^\w\s]")
MIX = np.uint64(0x9E3779B97F4A7C15)


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased word and punctuation tokens with their character spans in `text`."""
    return [(m.group().lower(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def hash_tokens(toks: list[tuple[str, int, int]]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(t[0].encode()) for t in toks), np.uint64, len(toks))


def gram_hashes(token_hashes: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each run of `n` token hashes (position-dependent)."""
    if len(token_hashes) < n:
        return np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        h = token_hashes[: len(token_hashes) - n + 1].copy()
        for j in range(1, n):
            h = h * MIX + token_hashes[j: len(token_hashes) - n + 1 + j]
    return h


class NgramIndex:
    """The n-grams of labelled items, sorted for lookup. An item shorter than ``ngram`` tokens
    counts as one n-gram of its own length if it has at least ``min_tokens`` tokens; shorter items
    (``ls -l``) would match everything and are left out. ``drop_shared``: n-grams found in this
    many items or more are boilerplate (a licence footer, a man page's standard sections) and are
    left out too."""

    def __init__(self, items: list[tuple[str, str]], ngram: int = 13, min_tokens: int = 8,
                 drop_shared: int | None = None):
        if not 1 <= min_tokens <= ngram:
            raise ValueError("need 1 <= min_tokens <= ngram")
        keys, owners, sizes = [], [], set()
        self.items: list[tuple[str, str]] = []
        for label, text in items:
            toks = tokens(text)
            if len(toks) < min_tokens:
                continue
            n = min(ngram, len(toks))
            h = gram_hashes(hash_tokens(toks), n)
            keys.append(h)
            owners.append(np.full(len(h), len(self.items), np.int64))
            self.items.append((label, text))
            sizes.add(n)
        keys_all = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        if drop_shared is not None and len(keys_all):
            pairs = np.unique(np.stack([keys_all, owner.astype(np.uint64)], axis=1), axis=0)
            shared_keys, owners_per_key = np.unique(pairs[:, 0], return_counts=True)
            keep = ~np.isin(keys_all, shared_keys[owners_per_key >= drop_shared])
            keys_all, owner = keys_all[keep], owner[keep]
        order = np.argsort(keys_all, kind="stable")
        self.keys, self.owner, self.sizes = keys_all[order], owner[order], sorted(sizes)

    def __len__(self) -> int:
        return len(self.items)

    def matches(self, text: str) -> tuple[int, int, int | None, list[tuple[int, int]]]:
        """(matched n-grams, the text's n-grams of the largest size, index of the first item
        matched, matched character spans)."""
        toks = tokens(text)
        if not toks or len(self.keys) == 0:
            return 0, 0, None, []
        th = hash_tokens(toks)
        count, first, first_pos, spans = 0, None, None, []
        for n in self.sizes:
            h = gram_hashes(th, n)
            if len(h) == 0:
                continue
            pos = np.searchsorted(self.keys, h)
            pos[pos == len(self.keys)] = 0
            hit = np.nonzero(self.keys[pos] == h)[0]
            count += len(hit)
            if len(hit) and (first_pos is None or hit[0] < first_pos):
                first_pos, first = int(hit[0]), int(self.owner[pos[hit[0]]])
            spans += [(toks[i][1], toks[i + n - 1][2]) for i in hit]
        return count, max(1, len(toks) - self.sizes[-1] + 1), first, spans
