"""Logs read as logs: records, not lines; documents cut by size or time; event templates in meta.

Per file: the format is detected from its first lines (log_formats.py), or learned from them when
no known format matches (learned_format.py); lines that start no record (stack traces,
continuation lines) join the record above; records are grouped into documents of at most
`max_doc_kb` of text, or of at most `window_s` seconds of log time; the messages of a work unit are
mined into event templates together (log_templates.py, `TemplateMiner.parse`). A document's meta holds its format, its time
span, its line range and, for each event template it contains, the template's id, text and count,
in order of first appearance.

Large uncompressed files are split into byte ranges read in parallel; a range starts at its first
record start and reads on past its end to finish its last record, so no record is cut in two.
Template mining runs per work unit; a template's id is a hash of its text, so units agree on the
ids of the templates they both find.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.schema import BASE_SCHEMA, doc_id
from pipeline.source import Source, documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.decode import looks_binary
from stages.ingest.jsonl import expand
from stages.ingest.learned_format import format_of, learned
from stages.ingest.log_formats import BY_NAME, UNKNOWN, LogFormat, record_time, split_header
from stages.ingest.log_templates import TemplateMiner, template_id

LOG_SUFFIXES = (".log", ".log.gz", ".log.bz2", ".log.xz", ".out", ".err", ".txt", ".gz", ".1", ".2", ".3")
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
HEAD_BYTES = 256 * 1024
CONTINUATION = re.compile(r"^(\s|Caused by:|\.\.\. \d+ more|Traceback \(|\w+(\.\w+)*(Error|Exception)\b)")
BATCH_DOCS = 256


@dataclass
class LogRecord:
    offset: int  # byte offset of its first line
    line: int  # 1-based line number in the unit (or in the file, for a unit that starts at 0)
    lines: list[str]
    ts: str | None
    time: float | None
    message: str


def _opener(path: str):
    return OPENERS.get(os.path.splitext(path)[1].lower())


def _spec(fmt: LogFormat) -> str | list:
    """What a work unit carries of a format: a known format's name, a learned one's pattern."""
    return fmt.name if fmt.name in BY_NAME else [fmt.header.pattern, list(fmt.time_formats)]


class LogSource(Source):
    """Log files under `paths` (files, directories, globs; .gz/.bz2/.xz read whole). `format`:
    a format name from log_formats.py, or "auto" (the known format that matches, else one learned
    from the file's own lines, learned_format.py). Documents hold at most `max_doc_kb` of text
    and, with `window_s`, at most that many seconds of log time. Binary and empty files are
    ledger entries (`unreadable:binary`, `empty`)."""

    kind = "logs"

    def __init__(self, name: str, paths: list[str], format: str = "auto", max_doc_kb: float = 64,
                 window_s: float | None = None, similarity: float = 0.7, depth: int = 4,
                 unit_mb: float = 64, include: list[str] | None = None, encoding: str = "utf-8"):
        super().__init__(name)
        if format != "auto" and format not in BY_NAME:
            raise ValueError(f"format must be auto or one of {', '.join(sorted(BY_NAME))}, not {format!r}")
        self.paths, self.format = paths, format
        self.max_chars = int(max_doc_kb * 1024)
        self.window_s = window_s
        self.similarity, self.depth = similarity, depth
        self.unit_bytes = int(unit_mb * (1 << 20))
        self.include = include
        self.encoding = encoding

    def plan(self) -> list:
        units = []
        for path in expand(self.paths, tuple(self.include or LOG_SUFFIXES)):
            try:
                head, size = self._head(path)
            except OSError as exc:
                units.append([path, "error", "unreadable:io_error", str(exc)])
                continue
            if not head:
                units.append([path, "error", "empty", "0 bytes"])
                continue
            if looks_binary(head):
                units.append([path, "error", "unreadable:binary", "NUL or control bytes: not a text log"])
                continue
            fmt = self.format if self.format != "auto" else _spec(format_of(
                head.decode(self.encoding, "replace").splitlines()[:2000]))
            if _opener(path) or size <= self.unit_bytes:
                units.append([path, fmt, 0, None])
            else:
                units += [[path, fmt, s, s + self.unit_bytes] for s in range(0, size, self.unit_bytes)]
        return units

    def _head(self, path: str) -> tuple[bytes, int]:
        opener = _opener(path)
        with (opener or open)(path, "rb") as f:
            head = f.read(HEAD_BYTES)
        return head, os.path.getsize(path)

    def read(self, payload: list) -> Iterator[Result]:
        path, fmt_name, start, end = payload
        if fmt_name == "error":
            yield Result(BASE_SCHEMA.empty_table(),
                         unreadable_table([unreadable("log", f"file://{path}", start, end, "log")]))
            return
        fmt = BY_NAME[fmt_name] if isinstance(fmt_name, str) else learned(*fmt_name)
        miner = TemplateMiner(self.similarity, self.depth)
        try:
            records = list(self._records(path, fmt, start, end))
        except (OSError, EOFError, lzma.LZMAError) as exc:
            yield Result(BASE_SCHEMA.empty_table(), unreadable_table(
                [unreadable("log", f"file://{path}#{start}", "unreadable:truncated_or_corrupt", str(exc), "log")]))
            return
        groups = miner.parse([r.message for r in records])  # the whole unit first: final templates
        docs = []
        for part in self._documents(records):
            docs.append(self._document(path, fmt, [records[i] for i in part], [groups[i] for i in part], start == 0))
            if len(docs) >= BATCH_DOCS:
                yield Result(documents(docs))
                docs = []
        yield Result(documents(docs))

    # -- records ----------------------------------------------------------------------------

    def _lines(self, path: str, start: int, end: int | None) -> Iterator[tuple[int, str, bool]]:
        """(byte offset, line, past the unit's end) from `start`, finishing the line it cuts."""
        opener = _opener(path)
        with (opener(path, "rb") if opener else open(path, "rb")) as f:
            offset = start
            if start:
                f.seek(start - 1)
                offset = start - 1 + len(f.readline())
            for raw in f:
                yield offset, raw.decode(self.encoding, "replace").rstrip("\r\n"), end is not None and offset >= end
                offset += len(raw)

    def _records(self, path: str, fmt: LogFormat, start: int, end: int | None) -> Iterator[LogRecord]:
        current: LogRecord | None = None
        number = 0
        for offset, line, past_end in self._lines(path, start, end):
            number += 1
            header = None if fmt is UNKNOWN and CONTINUATION.match(line) else split_header(fmt, line)
            if header is None or not line.strip():
                if current is not None:
                    current.lines.append(line)
                elif start == 0 and line.strip():  # a file that opens with a continuation: its own record
                    current = LogRecord(offset, number, [line], None, None, line.strip())
                continue  # a unit that starts mid-record leaves those lines to the unit before
            if past_end:
                break
            if current is not None:
                yield current
            ts, message = header
            current = LogRecord(offset, number, [line], ts, record_time(fmt, ts), message)
        if current is not None:
            yield current

    # -- documents --------------------------------------------------------------------------

    def _documents(self, records: list[LogRecord]) -> Iterator[list[int]]:
        """Consecutive records, cut where the text would pass `max_chars` or the span of log time
        would reach `window_s` (logs are not always in time order: the span is max - min); a
        record larger than `max_chars` is a document of its own."""
        part: list[int] = []
        chars, low, high = 0, None, None
        for i, record in enumerate(records):
            size = sum(len(line) + 1 for line in record.lines)
            t = record.time
            too_big = part and chars + size > self.max_chars
            too_long = (part and self.window_s is not None and t is not None and low is not None
                        and max(high, t) - min(low, t) >= self.window_s)
            if too_big or too_long:
                yield part
                part, chars, low, high = [], 0, None, None
            part.append(i)
            chars += size
            if t is not None:
                low, high = (t, t) if low is None else (min(low, t), max(high, t))
        if part:
            yield part

    def _document(self, path: str, fmt: LogFormat, recs: list[LogRecord], groups: list, whole_file: bool) -> dict:
        text = "\n".join(line for r in recs for line in r.lines) + "\n"
        templates: dict[str, list] = {}
        for group in groups:
            tid = template_id(group.template)
            if tid in templates:
                templates[tid][1] += 1
            else:
                templates[tid] = [tid, 1, group.template]
        stamped = [r for r in recs if r.ts]
        uri = f"file://{path}#{recs[0].offset}"
        meta = {
            "path": path, "log_format": fmt.name, "offset": recs[0].offset, "records": len(recs),
            "lines": sum(len(r.lines) for r in recs), "multiline_records": sum(len(r.lines) > 1 for r in recs),
            "start": stamped[0].ts if stamped else None, "end": stamped[-1].ts if stamped else None,
            "templates": list(templates.values()),  # [id, count, template], in order of first appearance
        }
        if whole_file:
            meta["first_line"] = recs[0].line
        return {"id": doc_id("log", uri), "text": text, "source": "log", "uri": uri, "kind": "log",
                "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)}
