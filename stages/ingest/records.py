"""A user's own records (JSONL lines, Parquet rows) as documents, keeping the input's id."""

from __future__ import annotations

import glob
import json
import os

from pipeline.schema import KINDS, doc_id
from pipeline.source import Source

DOC_FIELDS = ("id", "text", "source", "uri", "kind", "meta")


class BadRecord(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = f"unreadable:{reason}"


class RecordMapper:
    """Maps one record to a document: `text_field` is the text, `id_field` the id (kept as it is,
    after `id_prefix`); without an id, the id is a hash of where the record sits (`uri#offset`).
    Other fields go to meta."""

    def __init__(self, source: str, text_field: str = "text", id_field: str = "id", kind: str = "other",
                 id_prefix: str = ""):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.source, self.text_field, self.id_field, self.kind = source, text_field, id_field, kind
        self.id_prefix = id_prefix

    def fallback_id(self, where: str) -> str:
        return doc_id(self.source, where)

    def __call__(self, record, where: str) -> dict:
        if not isinstance(record, dict):
            raise BadRecord("not_an_object", f"a {type(record).__name__}, not an object")
        text = record.get(self.text_field)
        if text is None:
            raise BadRecord("missing_text", f"no {self.text_field!r} field")
        if not isinstance(text, str):
            raise BadRecord("text_not_string", f"{self.text_field!r} is a {type(text).__name__}")
        rid = record.get(self.id_field)
        kind = record.get("kind")
        meta = {k: v for k, v in record.items() if k not in DOC_FIELDS and k not in (self.text_field, self.id_field)}
        given = record.get("meta")
        if isinstance(given, str):  # curate shards keep meta as a JSON string
            try:
                given = json.loads(given)
            except json.JSONDecodeError:
                given = {"meta": given}
        if isinstance(given, dict):
            meta = {**given, **meta}
        return {
            "id": self.id_prefix + str(rid) if rid is not None else self.fallback_id(where),
            "text": text,
            "source": str(record.get("source") or self.source),
            "uri": str(record.get("uri") or record.get("url") or where),
            "kind": kind if kind in KINDS else self.kind,
            "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str),
        }


def expand(paths: list[str], patterns: tuple[str, ...]) -> list[str]:
    """Files named directly, matched by a glob, or found under a directory (by `patterns`), sorted."""
    out = []
    for p in paths:
        p = os.path.expanduser(p)
        if os.path.isdir(p):
            out += [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.endswith(patterns)]
        elif any(c in p for c in "*?["):
            out += glob.glob(p, recursive=True)
        else:
            out.append(p)
    return sorted(set(os.path.abspath(p) for p in out))


class RecordSource(Source):
    """A source of records from files (`paths`: files, globs or directories) split into units of
    about `unit_mb`; `source` labels documents without a `source` field (default: the input type).
    `id_prefix` goes before every given id: two sets that share ids (the same requests answered two
    ways, say) stay apart, where the job's unique ids would keep one document of each id."""

    def __init__(self, name: str, paths: list[str], text_field: str = "text", id_field: str = "id",
                 kind: str = "other", source: str | None = None, unit_mb: float = 64, id_prefix: str = ""):
        super().__init__(name)
        self.paths = paths
        self.mapper = RecordMapper(source or self.kind, text_field, id_field, kind, id_prefix)
        self.unit_bytes = int(unit_mb * (1 << 20))
