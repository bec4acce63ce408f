"""Decontamination: drop (or cut out of) training documents what they share with evaluation sets.

The n-gram overlap test of GPT-3 (Brown et al. 2020, Appendix C) and Llama 2: text and eval
items are lower-cased and split into word and punctuation tokens; a document is contaminated
when it contains any 13-gram (`ngram`) of an eval item. An item shorter than `ngram` tokens
(most NL2Bash descriptions and commands) counts as one n-gram of its own length, if it has at
least `min_tokens` tokens; shorter items (`ls -l`) would match everything and are skipped.

With `suite` (the eval suite's definition, `configs/eval/suite.yaml`), the suite is kept out of
training as a whole: every document it holds out (man pages of its commands, config files and
logs whose id hashes under its fractions, Loghub systems) is dropped by id or by the file it came
from (`suite_held_out`), any document with an n-gram of a suite request or command is dropped
(`decontaminated`, the item named `suite NAME:...`), and any document with at least
`suite_min_overlap` of its n-grams in the suite's documents (`suite_overlap`; boilerplate shared by
several suite documents does not count). Kept rows record the suite's hash (`decontam.suite`),
which is how `sigma eval suite` knows a model was trained on data decontaminated against it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pyarrow as pa

from pipeline.stage import Filter, Resources, Result, set_columns, split_dropped
from sigma.evals.overlap import NgramIndex

ITEM, MATCHES = "decontam.item", "decontam.matches"
HELD, SHARE, SUITE_ITEM, SUITE = "decontam.suite_held_out", "decontam.suite_overlap", "decontam.suite_item", "decontam.suite"


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
    fields are items (default every string field). `suite`: an eval suite's definition, kept out
    as the module docstring says (its held-out documents and overlaps are dropped whatever the
    action); `suite_build_dir`: where its built data lives (default: the definition's)."""

    name = "decontaminate"
    resources = Resources(batch_size=1024, actor=True)

    def __init__(self, eval_sets: list[str] | None = None, suite: str | None = None, fields: list[str] | None = None,
                 ngram: int = 13, min_tokens: int = 8, action: str = "drop", min_matches: int | None = 1,
                 suite_min_overlap: float | None = 0.2, suite_build_dir: str | None = None):
        if action not in ("drop", "redact"):
            raise ValueError(f"action must be drop or redact, not {action!r}")
        if not 1 <= min_tokens <= ngram:
            raise ValueError("need 1 <= min_tokens <= ngram")
        if not eval_sets and not suite:
            raise ValueError("give eval_sets (JSONL or text files of eval items), suite (an eval suite's definition), or both")
        missing = [p for p in eval_sets or [] if not os.path.exists(p)]
        if missing:
            raise ValueError(f"eval set(s) not found: {', '.join(missing)}")
        self.eval_sets, self.fields, self.ngram, self.min_tokens = list(eval_sets or []), fields, ngram, min_tokens
        self.action, self.min_matches, self.suite_min_overlap = action, min_matches, suite_min_overlap
        self.suite_path = self.suite_name = self.suite_hash = None
        if suite:
            from stages.ingest.eval_suite import ensure_suite

            built = ensure_suite(suite, build_dir=suite_build_dir)  # built here once, read by every worker
            self.suite_path, self.suite_name, self.suite_hash = str(built.path), built.name, built.hash
        self._index = self._suite = None

    def columns(self) -> dict[str, pa.DataType]:
        columns = {MATCHES: pa.int32(), ITEM: pa.string()}
        if self.suite_path:
            columns.update({HELD: pa.bool_(), SHARE: pa.float32(), SUITE_ITEM: pa.string(), SUITE: pa.string()})
        return columns

    def __getstate__(self):
        return {**self.__dict__, "_index": None, "_suite": None}

    def setup(self) -> None:
        if self._index is not None:
            return
        items = [item for path in self.eval_sets for item in read_items(path, self.fields)]
        if self.suite_path:
            from sigma.evals.suite import Suite, SuiteOverlap

            self._suite = SuiteOverlap(Suite.open(self.suite_path), self.ngram, self.min_tokens,
                                       self.suite_min_overlap or 1.0)
            items += self._suite.suite.short_texts()
        self._index = NgramIndex(items, self.ngram, self.min_tokens)

    def signal(self, batch: pa.Table) -> pa.Table:
        self.setup()
        rows = batch.num_rows
        texts = [t or "" for t in batch["text"].to_pylist()]
        counts, items = [], []
        for text in texts:
            count, _, first, _ = self._index.matches(text)
            counts.append(count)
            items.append(None if first is None else self._index.items[first][0])
        values = {MATCHES: pa.array(counts, pa.int32()), ITEM: pa.array(items, pa.string())}
        if self._suite is not None:
            ids = batch["id"].to_pylist() if "id" in batch.column_names else [None] * rows
            uris = batch["uri"].to_pylist() if "uri" in batch.column_names else [None] * rows
            held, shares, docs = [], [], []
            for doc_id, uri, text in zip(ids, uris, texts):
                held.append(self._suite.suite.is_held_out(doc_id, uri))
                long_count, total, first, _ = self._suite.long.matches(text)
                shares.append(long_count / total if long_count else 0.0)
                docs.append(None if first is None else self._suite.long.items[first][0])
            values.update({HELD: pa.array(held, pa.bool_()), SHARE: pa.array(shares, pa.float32()),
                           SUITE_ITEM: pa.array(docs, pa.string()), SUITE: pa.array([self.suite_hash] * rows, pa.string())})
        return set_columns(batch, values)

    def decide(self, batch: pa.Table):
        reasons, details = [], []
        lookup = dict(self._index.items) if self._index else {}
        suite = f"suite {self.suite_name} ({(self.suite_hash or '')[:12]})"
        held = batch[HELD].to_pylist() if HELD in batch.column_names else [False] * batch.num_rows
        shares = batch[SHARE].to_pylist() if SHARE in batch.column_names else [0.0] * batch.num_rows
        suite_items = batch[SUITE_ITEM].to_pylist() if SUITE_ITEM in batch.column_names else [None] * batch.num_rows
        for count, item, is_held, share, doc in zip(batch[MATCHES].to_pylist(), batch[ITEM].to_pylist(), held, shares,
                                                    suite_items):
            if is_held:
                reasons.append("suite_held_out")
                details.append(f"{suite} holds this document out")
            elif self.suite_min_overlap is not None and share is not None and share >= self.suite_min_overlap:
                reasons.append("suite_overlap")
                details.append(f"{share:.0%} of its n-grams are in {doc} ({(self.suite_hash or '')[:12]})")
            elif self._drops(count, item):
                reasons.append("decontaminated")
                details.append(f"{item} ({count} n-grams): {lookup.get(item, '')[:200]}")
            else:
                reasons.append(None), details.append(None)
        return reasons, details

    def _drops(self, count, item) -> bool:
        if count is None or self.min_matches is None or count < self.min_matches:
            return False
        # suite items are dropped whatever the action: the suite must never be trained on
        return self.action == "drop" or (item or "").startswith("suite ")

    def process(self, batch: pa.Table) -> Result:
        if self.action == "drop":
            return super().process(batch)
        batch = self.signal(batch)
        reasons, details = self.decide(batch)
        out = []
        for text, count, reason in zip(batch["text"].to_pylist(), batch[MATCHES].to_pylist(), reasons):
            out.append(_cut(text, self._index.matches(text)[3]) if count and reason is None else text)
        field = batch.schema.field("text")
        batch = batch.set_column(batch.schema.get_field_index("text"), field, pa.array(out, field.type))
        return split_dropped(batch, reasons, details)


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
