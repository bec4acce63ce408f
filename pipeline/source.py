"""Sources: where documents come from. A source plans its input as work units, then reads one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import pyarrow as pa

from pipeline.schema import BASE_SCHEMA, doc_id
from pipeline.stage import DROP_FIELDS, Result

UNREADABLE_SCHEMA = pa.schema(list(BASE_SCHEMA) + DROP_FIELDS)
SURROGATE = re.compile("[\ud800-\udfff]")


class Source:
    """Plans input into work units (JSON-able payloads) and reads one unit into documents.

    A unit is the grain of parallelism and of resume: its output is written as a whole, so a
    re-run skips the units that finished. Plans must be deterministic for the same input.
    """

    kind: ClassVar[str] = "source"

    def __init__(self, name: str):
        self.name = name

    def plan(self) -> list[Any]:
        raise NotImplementedError

    def columns(self) -> dict[str, pa.DataType]:
        """Columns beyond the document schema that this source's documents carry (the stored
        signals of a finished output), kept in the output schema."""
        return {}

    def read(self, payload: Any) -> Iterator[Result]:
        """Yield documents (`kept`) and inputs that could not be read (`dropped`, with reasons)."""
        raise NotImplementedError

    def read_all(self, units: list[Any] | None = None) -> tuple[list[dict], list[dict]]:
        """Every document and every unreadable input of `units` (default: the whole plan) as
        rows, in this process: for looking at what a source yields, without a job."""
        docs, dropped = [], []
        for unit in self.plan() if units is None else units:
            for result in self.read(unit):
                docs += result.kept.to_pylist()
                if result.dropped is not None:
                    dropped += result.dropped.to_pylist()
        return docs, dropped


def unreadable(source: str, uri: str, reason: str, detail: str, kind: str = "other") -> dict:
    """A ledger row for an input that yields no document (`unreadable:<why>`, `too_large`, ...)."""
    return {
        "id": doc_id(source, uri), "text": None, "source": source, "uri": uri, "kind": kind,
        "meta": "{}", "reason": reason, "detail": detail,
    }


def unreadable_table(rows: list[dict]) -> pa.Table:
    return _table(rows, UNREADABLE_SCHEMA)


def documents(rows: list[dict]) -> pa.Table:
    """Documents as a table. A string that Arrow cannot hold, a lone surrogate (a JSON escape
    such as `"\\ud800"`, a file name that is not UTF-8), is repaired to U+FFFD, and the document's
    meta says which fields were (`"repaired": ["text:lone_surrogate"]`)."""
    return _table(rows, BASE_SCHEMA)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except UnicodeEncodeError:
        return pa.Table.from_pylist([repair(r) for r in rows], schema=schema)


def repair(row: dict) -> dict:
    """`row` with lone surrogates replaced in its string fields, recorded in its meta."""
    fixed = [k for k, v in row.items() if isinstance(v, str) and SURROGATE.search(v)]
    if not fixed:
        return row
    row = {k: SURROGATE.sub("\ufffd", v) if k in fixed else v for k, v in row.items()}
    try:
        meta = json.loads(row.get("meta") or "{}")
    except json.JSONDecodeError:
        meta = {"meta": row["meta"]}
    meta = meta if isinstance(meta, dict) else {"meta": meta}
    meta["repaired"] = sorted({*meta.get("repaired", []), *(f"{k}:lone_surrogate" for k in fixed)})
    row["meta"] = SURROGATE.sub("\ufffd", json.dumps(meta, sort_keys=True, ensure_ascii=False))  # its own escapes too
    return row


def group_by_size(items: list[tuple[Any, int]], max_bytes: int, max_items: int) -> list[list[Any]]:
    """Cut an ordered list of (item, size) into consecutive groups bounded in bytes and count."""
    groups: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for item, n in items:
        if current and (size + n > max_bytes or len(current) >= max_items):
            groups.append(current)
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        groups.append(current)
    return groups
