"""WARC and WET input (ISO 28500): web captures from Common Crawl, a crawler, or `wget --warc-file`.

Files are read as a stream of records, each framed on its own (a gzip member in `.warc.gz`, a
header block plus Content-Length in plain `.warc`) and parsed with warcio. A damaged record (bad
gzip data, a header that does not parse, a Content-Length that runs into the next record, a
digest that does not match, a truncated end) is a ledger entry, and reading resumes at the next
record boundary, so one bad record costs one record, not the file.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.schema import BASE_SCHEMA
from pipeline.source import Source, documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.jsonl import expand
from stages.ingest.webpage import DROPPED_FIELD, NoDocument, PagePolicy, Response

SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
GZIP_MAGIC = b"\x1f\x8b\x08"
READ_CHUNK = 1 << 20
OUT_CHUNK = 4 << 20
MAX_HEADER = 1 << 16
CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.I | re.M)
DOC_TYPES = ("response", "resource", "conversion")  # the records that carry a page
BATCH_DOCS = 512


@dataclass
class RawRecord:
    """One framed record: its bytes, or why it could not be framed or is refused."""

    offset: int
    length: int
    data: bytes | None = None
    reason: str | None = None
    detail: str = ""


class _Stream:
    """A forward reader over a binary file that knows the absolute offset of its buffer."""

    def __init__(self, f):
        self.f, self.buf, self.pos, self.eof = f, b"", 0, False

    def fill(self, n: int) -> bool:
        """Make the buffer hold at least `n` bytes if the file has them; False at the end."""
        while len(self.buf) < n and not self.eof:
            chunk = self.f.read(max(READ_CHUNK, n - len(self.buf)))
            if not chunk:
                self.eof = True
            self.buf += chunk
        return len(self.buf) >= n

    def consume(self, n: int) -> None:
        while n > len(self.buf) and not self.eof:  # skipping past the buffer: read and drop
            n -= len(self.buf)
            self.pos += len(self.buf)
            self.buf = b""
            self.fill(1)
        n = min(n, len(self.buf))
        self.buf, self.pos = self.buf[n:], self.pos + n

    def find(self, pattern: bytes, start: int) -> int:
        """Offset (from the buffer's start) of the next `pattern` at or after `start`, or the
        buffer's end at the end of the file."""
        while True:
            i = self.buf.find(pattern, start)
            if i >= 0:
                return i
            if self.eof:
                return len(self.buf)
            start = max(start, len(self.buf) - len(pattern) + 1)
            self.fill(len(self.buf) + READ_CHUNK)


def _gzip_records(s: _Stream, max_bytes: int) -> Iterator[RawRecord]:
    """Gzip members, one WARC record each (the .warc.gz convention)."""
    while s.fill(1):
        s.fill(3)
        if not s.buf.startswith(GZIP_MAGIC):
            skip = s.find(GZIP_MAGIC, 1)
            yield RawRecord(s.pos, skip, reason="unreadable:corrupt_record", detail="bytes that are not a gzip member")
            s.consume(skip)
            continue
        d = zlib.decompressobj(31)
        out, size, fed, error = [], 0, 0, None
        while not d.eof:
            if fed >= len(s.buf) and not s.fill(fed + 1):
                error = ("unreadable:truncated_record", "the file ends inside a gzip member")
                break
            feed = s.buf[fed:fed + READ_CHUNK]
            fed += len(feed)
            try:
                while feed and not d.eof:
                    data = d.decompress(feed, OUT_CHUNK)
                    size += len(data)
                    if size <= max_bytes:
                        out.append(data)
                    feed = d.unconsumed_tail
            except zlib.error as exc:
                error = ("unreadable:corrupt_record", f"bad gzip data: {exc}")
                break
        if error:
            skip = s.find(GZIP_MAGIC, 1)
            yield RawRecord(s.pos, skip, reason=error[0], detail=error[1])
            s.consume(skip)
            continue
        length = fed - len(d.unused_data)
        if size > max_bytes:
            yield RawRecord(s.pos, length, reason="too_large", detail=f"{size} bytes, over the cap of {max_bytes}")
        else:
            yield RawRecord(s.pos, length, b"".join(out))
        s.consume(length)


def _plain_records(s: _Stream, max_bytes: int) -> Iterator[RawRecord]:
    """Uncompressed records: a header block, a Content-Length body, then CRLF CRLF."""
    while True:
        s.fill(2)
        blank = len(s.buf) - len(s.buf.lstrip(b"\r\n"))
        while blank == len(s.buf) and s.buf and not s.eof:
            s.consume(blank)
            s.fill(2)
            blank = len(s.buf) - len(s.buf.lstrip(b"\r\n"))
        s.consume(blank)
        if not s.fill(1):
            return
        s.fill(8)
        end = s.find(b"\r\n\r\n", 0) if s.buf.startswith(b"WARC/") else -1
        match = CONTENT_LENGTH.search(s.buf[:end]) if 0 <= end < MAX_HEADER else None
        if match is None:
            skip = s.find(b"\nWARC/", 0) + 1
            yield RawRecord(s.pos, skip, reason="unreadable:corrupt_record",
                            detail="no WARC header with a Content-Length here")
            s.consume(skip)
            continue
        total = end + 4 + int(match.group(1))
        if total > max_bytes:
            s.consume(total)
            yield RawRecord(s.pos - total, total, reason="too_large", detail=f"{total} bytes, over the cap of {max_bytes}")
            continue
        if not s.fill(total):
            yield RawRecord(s.pos, len(s.buf), reason="unreadable:truncated_record",
                            detail=f"the file ends {total - len(s.buf)} bytes short of the record's end")
            s.consume(len(s.buf))
            return
        s.fill(total + 16)
        tail = s.buf[total:total + 16]
        if tail.lstrip(b"\r\n") and not tail.startswith(b"\r\n\r\n") and not tail.lstrip(b"\r\n").startswith(b"WARC/"):
            # the Content-Length is wrong: find the next record
            skip = s.find(b"\nWARC/", end) + 1
            yield RawRecord(s.pos, skip, reason="unreadable:corrupt_record",
                            detail="the record does not end where its Content-Length says")
            s.consume(skip)
            continue
        yield RawRecord(s.pos, total, s.buf[:total])
        s.consume(total)


def _unpacked(members: Iterator[RawRecord], max_bytes: int) -> Iterator[RawRecord]:
    """The records inside each gzip member: one, by convention; several where a whole file was
    gzipped as one stream (those share the member's offset)."""
    for member in members:
        if member.data is None:
            yield member
            continue
        inner = list(_plain_records(_Stream(io.BytesIO(member.data)), max_bytes))
        for record in inner:
            record.offset, record.length = member.offset, member.length
            yield record


def framed_records(f, max_bytes: int) -> Iterator[RawRecord]:
    s = _Stream(f)
    s.fill(3)
    gzipped = s.buf.startswith(GZIP_MAGIC)
    records = _unpacked(_gzip_records(s, max_bytes), max_bytes) if gzipped else _plain_records(s, max_bytes)
    pending = None
    for record in records:  # merge adjacent damaged stretches: one corruption, one ledger entry
        if pending and record.reason == pending.reason and record.data is None \
                and record.offset == pending.offset + pending.length and record.reason != "too_large":
            pending.length += record.length
            continue
        if pending:
            yield pending
        pending = record
    if pending:
        yield pending


def parse_record(data: bytes, where: dict) -> tuple[str, Response | None]:
    """(WARC-Type, the Response it carries, if it carries a page). Raises NoDocument for a
    damaged record, so the caller has one kind of failure to record."""
    from warcio.exceptions import ArchiveLoadFailed
    from warcio.recordloader import ArcWarcRecordLoader

    try:
        record = ArcWarcRecordLoader(verify_http=False).parse_record_stream(
            io.BytesIO(data), known_format="warc", check_digests="raise")
        rec_type = record.rec_type
        if rec_type not in DOC_TYPES:
            record.raw_stream.read()
            return rec_type, None
        try:
            body = record.content_stream().read()
        except (OSError, zlib.error, EOFError, ValueError) as exc:
            raise NoDocument("unreadable:content_encoding", f"cannot undo the content encoding: {exc}") from None
        record.raw_stream.read()  # the rest, so the digest check sees the whole block
        h = record.rec_headers
        if record.http_headers is not None and rec_type == "response":
            status = int(record.http_headers.get_statuscode() or 0)
            headers = list(record.http_headers.headers)
        else:
            status, headers = 200, [("Content-Type", record.content_type or h.get_header("Content-Type") or "")]
    except ArchiveLoadFailed as exc:
        reason = "unreadable:digest_mismatch" if "digest" in str(exc).lower() else "unreadable:corrupt_record"
        raise NoDocument(reason, str(exc)[:500]) from None
    except (ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise NoDocument("unreadable:corrupt_record", f"{type(exc).__name__}: {exc}"[:500]) from None
    url = h.get_header("WARC-Target-URI") or ""
    extra = dict(where)
    if rec_type != "response":
        extra["warc_type"] = rec_type
    if h.get_header(DROPPED_FIELD):
        extra[DROPPED_FIELD] = h.get_header(DROPPED_FIELD)
    if h.get_header("WARC-Refers-To"):
        extra["warc_refers_to"] = h.get_header("WARC-Refers-To")
    return rec_type, Response(url, h.get_header("WARC-Date") or "", h.get_header("WARC-Record-ID") or "",
                              status, headers, body, extra)


def open_path(path: str):
    """A local path, or a URI pyarrow's filesystems know (s3://, gs://, hdfs://, file://)."""
    if "://" in path:
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        return filesystem.open_input_stream(inner)
    return open(path, "rb")


def expand_paths(paths: list[str]) -> list[str]:
    local = [p for p in paths if "://" not in p]
    out = expand(local, SUFFIXES)
    for uri in (p for p in paths if "://" in p):
        if uri.endswith(SUFFIXES):
            out.append(uri)
            continue
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(uri)
        scheme = uri.split("://", 1)[0]
        for info in filesystem.get_file_info(fs.FileSelector(inner, recursive=True)):
            if info.is_file and info.path.endswith(SUFFIXES):
                out.append(f"{scheme}://{info.path}" if scheme != "file" else f"file://{info.path}")
    return sorted(set(out))


class WarcSource(Source):
    """WARC and WET files, one document per page capture (response, resource or WET conversion
    record). URL, fetch date, HTTP status and headers and the record id go to `meta`. Records
    that yield no document are ledger entries: damaged (`unreadable:corrupt_record`,
    `unreadable:truncated_record`, `unreadable:digest_mismatch`), `http_status:<code>`,
    `wrong_content_type`, `too_large`, `no_text`, `warc_revisit`, and the reason the crawler gave
when it wrote a response it took no document from. Request, metadata and warcinfo
    records describe captures rather than hold one, and are not inputs."""

    kind = "warc"

    def __init__(self, name: str, paths: list[str], extractor: str = "resiliparse",
                 content_types: list[str] | None = None, max_record_mb: float = 16, kind: str = "web"):
        super().__init__(name)
        self.paths = paths
        self.policy = PagePolicy(extractor, content_types or PagePolicy().content_types,
                                 int(max_record_mb * (1 << 20)), kind)

    def plan(self) -> list:
        return [[p] for p in expand_paths(self.paths)]

    def read(self, payload: list) -> Iterator[Result]:
        (path,) = payload
        docs, bad = [], []
        try:
            f = open_path(path)
        except OSError as exc:
            yield Result(BASE_SCHEMA.empty_table(),
                         unreadable_table([unreadable("warc", path, "unreadable:io_error", str(exc), self.policy.kind)]))
            return
        name = os.path.basename(path)
        with f:
            for raw in framed_records(f, self.policy.max_bytes):
                where = {"warc_file": name, "warc_offset": raw.offset}
                if raw.data is None:
                    bad.append(unreadable("warc", f"{path}#{raw.offset}", raw.reason,
                                          f"{raw.detail} ({raw.length} bytes at offset {raw.offset})", self.policy.kind))
                    continue
                try:
                    rec_type, response = parse_record(raw.data, where)
                    if rec_type == "revisit":
                        raise NoDocument("warc_revisit", "a revisit record: the payload is that of an earlier capture")
                    if response is None:
                        continue
                    if DROPPED_FIELD in response.extra_meta:
                        reason, _, detail = response.extra_meta.pop(DROPPED_FIELD).partition(" ")
                        raise NoDocument(reason, detail)
                    docs.append(self.policy.document(response, "warc"))
                except NoDocument as exc:
                    bad.append(unreadable("warc", _uri(raw.data) or f"{path}#{raw.offset}", exc.reason,
                                          f"{exc} (record at offset {raw.offset})", self.policy.kind))
                if len(docs) >= BATCH_DOCS:
                    yield Result(documents(docs))
                    docs = []
        yield Result(documents(docs), unreadable_table(bad))


def _uri(data: bytes) -> str | None:
    match = re.search(rb"^WARC-Target-URI:\s*<?([^\r\n>]+)>?\s*$", data[:MAX_HEADER], re.I | re.M)
    return match.group(1).decode("utf-8", "replace") if match else None
