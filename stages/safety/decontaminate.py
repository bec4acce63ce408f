"""Decontamination: drop (or cut out of) training documents what they share with evaluation sets.

The n-gram overlap test of GPT-3 (Brown et al. 2020, Appendix C) and Llama 2: text and eval
items are lower-cased and split into word and punctuation tokens; a document is contaminated
when it contains any 13-gram (`ngram`) of an eval item. An item shorter than `ngram` tokens
(most NL2Bash descriptions and commands) counts as one n-gram of its own length, if it has at
least `min_tokens` tokens; shorter items (`ls -l`) would match everything and are skipped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import xxhash

from pipeline.stage import Filter, Resources, Result, split_dropped

TOKEN = re.compile(r"\w+|[^\w\s]")
ITEM, MATCHES = "decontam.item", "decontam.matches"
MIX = np.uint64(0x9E3779B97F4A7C15)


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Lower-cased word and punctuation tokens with their character spans in `text`."""
    return [(m.group().lower(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def gram_hashes(token_hashes: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit hash of each run of `n` token hashes (position-dependent)."""
    if len(token_hashes) < n:
        return np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        h = token_hashes[: len(token_hashes) - n + 1].copy()
        for j in range(1, n):
            h = h * MIX + token_hashes[j: len(token_hashes) - n + 1 + j]
    return h


def hash_tokens(toks: list[tuple[str, int, int]]) -> np.ndarray:
    return np.fromiter((xxhash.xxh3_64_intdigest(t[0].encode()) for t in toks), np.uint64, len(toks))


def read_items(path: str, fields: Sequence[str] | None) -> list[tuple[str, str]]:
    """(label, text) for each eval item: every string field (or `fields`) of a JSONL record, or
    every non-blank line of a text file. The label says where the item is: `file:line:field`."""
    name = os.path.basename(path)
    items = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.endswith((".jsonl", ".json")):
                record = json.loads(line)
                for key, value in record.items():
                    if isinstance(value, str) and (fields is None or key in fields):
                        items.append((f"{name}:{i}:{key}", value))
            else:
                items.append((f"{name}:{i}", line.strip()))
    return items


class Decontaminate(Filter):
    """Marks documents that share an n-gram with an eval item: `decontam.matches` (how many of
    the document's n-grams are in an eval set) and `decontam.item` (the first eval item matched,
    as `file:line:field`). `action: drop` drops a document with at least `min_matches` matches
    (reason `decontaminated`, detail: the item and its text); `action: redact` keeps it with each
    matched span replaced by `<EVAL>`. `eval_sets`: JSONL or text files; `fields`: which JSONL
    fields are items (default every string field)."""

    name = "decontaminate"
    resources = Resources(batch_size=1024, actor=True)

    def __init__(self, eval_sets: list[str], fields: list[str] | None = None, ngram: int = 13,
                 min_tokens: int = 8, action: str = "drop", min_matches: int | None = 1):
        if action not in ("drop", "redact"):
            raise ValueError(f"action must be drop or redact, not {action!r}")
        if not 1 <= min_tokens <= ngram:
            raise ValueError("need 1 <= min_tokens <= ngram")
        missing = [p for p in eval_sets if not os.path.exists(p)]
        if missing:
            raise ValueError(f"eval set(s) not found: {', '.join(missing)}")
        self.eval_sets, self.fields, self.ngram, self.min_tokens = list(eval_sets), fields, ngram, min_tokens
        self.action, self.min_matches = action, min_matches
        self._index = None

    def columns(self) -> dict[str, pa.DataType]:
        return {MATCHES: pa.int32(), ITEM: pa.string()}

    def __getstate__(self):
        return {**self.__dict__, "_index": None}

    def setup(self) -> None:
        if self._index is not None:
            return
        keys, labels, texts, sizes = [], [], [], set()
        for path in self.eval_sets:
            for label, text in read_items(path, self.fields):
                toks = tokens(text)
                if len(toks) < self.min_tokens:
                    continue
                n = min(self.ngram, len(toks))
                h = gram_hashes(hash_tokens(toks), n)
                keys.append(h)
                labels.append(np.full(len(h), len(texts), np.int64))
                texts.append((label, text))
                sizes.add(n)
        keys_all = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
        owner = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        order = np.argsort(keys_all, kind="stable")
        self._index = (keys_all[order], owner[order], texts, sorted(sizes))

    def _matches(self, text: str) -> tuple[int, int | None, list[tuple[int, int]]]:
        """(number of matched n-grams, first matched item, matched character spans)."""
        keys, owner, _, sizes = self._index
        toks = tokens(text)
        if not toks or len(keys) == 0:
            return 0, None, []
        th = hash_tokens(toks)
        count, first, first_pos, spans = 0, None, None, []
        for n in sizes:
            h = gram_hashes(th, n)
            if len(h) == 0:
                continue
            pos = np.searchsorted(keys, h)
            pos[pos == len(keys)] = 0
            hit = np.nonzero(keys[pos] == h)[0]
            count += len(hit)
            if len(hit) and (first_pos is None or hit[0] < first_pos):
                first_pos, first = int(hit[0]), int(owner[pos[hit[0]]])
            spans += [(toks[i][1], toks[i + n - 1][2]) for i in hit]
        return count, first, spans

    def signal(self, batch: pa.Table) -> pa.Table:
        self.setup()
        texts = self._index[2]
        counts, items = [], []
        for text in batch["text"].to_pylist():
            count, first, _ = self._matches(text or "")
            counts.append(count)
            items.append(None if first is None else texts[first][0])
        for name in (MATCHES, ITEM):
            if name in batch.column_names:
                batch = batch.drop_columns([name])
        batch = batch.append_column(MATCHES, pa.array(counts, pa.int32()))
        return batch.append_column(ITEM, pa.array(items, pa.string()))

    def decide(self, batch: pa.Table):
        reasons, details = [], []
        lookup = dict(self._index[2]) if self._index else {}
        for count, item in zip(batch[MATCHES].to_pylist(), batch[ITEM].to_pylist()):
            if self.action == "drop" and self.min_matches is not None and count is not None and count >= self.min_matches:
                reasons.append("decontaminated")
                details.append(f"{item} ({count} n-grams): {lookup.get(item, '')[:200]}")
            else:
                reasons.append(None), details.append(None)
        return reasons, details

    def process(self, batch: pa.Table) -> Result:
        if self.action == "drop":
            return super().process(batch)
        batch = self.signal(batch)
        out = []
        for text, count in zip(batch["text"].to_pylist(), batch[MATCHES].to_pylist()):
            out.append(_cut(text, self._matches(text)[2]) if count else text)
        field = batch.schema.field("text")
        batch = batch.set_column(batch.schema.get_field_index("text"), field, pa.array(out, field.type))
        return split_dropped(batch, [None] * batch.num_rows)


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace the union of `spans` with `<EVAL>`."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    parts, last = [], 0
    for s, e in merged:
        parts += [text[last:s], "<EVAL>"]
        last = e
    return "".join(parts + [text[last:]])
