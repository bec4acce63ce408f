"""JSONL input: large files split into byte ranges (line-aligned) so they read in parallel."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator

from pipeline.schema import BASE_SCHEMA
from pipeline.source import documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.records import BadRecord, RecordSource, expand

BATCH_DOCS = 1024


class JsonlSource(RecordSource):
    """JSON Lines files (`.jsonl`, `.json`, `.jsonl.gz`), one document per line. Lines that are not
    JSON, not UTF-8, not objects or have no text are ledger entries; blank lines are skipped."""

    kind = "jsonl"

    def plan(self) -> list:
        units = []
        for path in expand(self.paths, (".jsonl", ".json", ".jsonl.gz", ".ndjson")):
            size = os.path.getsize(path) if os.path.isfile(path) else 0
            if path.endswith(".gz") or size <= self.unit_bytes:
                units.append([path, 0, None])
            else:
                units += [[path, start, start + self.unit_bytes] for start in range(0, size, self.unit_bytes)]
        return units

    def read(self, payload: list) -> Iterator[Result]:
        path, start, end = payload
        try:
            f = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
        except OSError as exc:
            yield Result(BASE_SCHEMA.empty_table(), unreadable_table(
                [unreadable(self.mapper.source, f"file://{path}", "unreadable:io_error", str(exc))]))
            return
        docs, bad = [], []
        with f:
            offset = start
            if start:
                f.seek(start - 1)
                offset = start - 1 + len(f.readline())  # finish the line that straddles `start`
            while end is None or offset < end:
                try:
                    line = f.readline()
                except (OSError, EOFError) as exc:
                    bad.append(unreadable(self.mapper.source, f"file://{path}#{offset}",
                                          "unreadable:truncated_gzip", str(exc)))
                    break
                if not line:
                    break
                where = f"{path}#{offset}"
                offset += len(line)
                if not line.strip():
                    continue
                try:
                    docs.append(self.mapper(_parse(line), where))
                except BadRecord as exc:
                    bad.append(unreadable(self.mapper.source, where, exc.reason, str(exc)))
                if len(docs) >= BATCH_DOCS:
                    yield Result(documents(docs))
                    docs = []
        yield Result(documents(docs), unreadable_table(bad))


def _parse(line: bytes):
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord("invalid_utf8", f"byte {exc.start}: {exc.reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord("invalid_json", str(exc)) from None
