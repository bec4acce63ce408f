"""Ingest a local directory tree: one document per readable text file, a ledger entry for the rest.

Markup is turned into the text it stands for, as the sources made for it do: a man page's roff
source is rendered by the `man` source's groff renderer (so a page that the `man` source also
reads is the same text, which exact dedupe drops), and HTML goes through the main-text
extractor that WARC input uses. What a program wrote rather than a person (minified code, copies
of JavaScript libraries and documentation generators' assets, source maps, JSON dumps of API
docs), Texinfo and other roff source, SVG images and certificate files are ledger entries with
the reason and the evidence (`classify.source_format`).
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator
from typing import Literal

from pipeline.schema import doc_id
from pipeline.source import Source, documents, group_by_size, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.classify import classify, source_format
from stages.ingest.decode import Unreadable, read_text
from stages.ingest.html_text import extract
from stages.ingest.man import SECTION_DIR, page_fields, render_roff

BATCH_DOCS = 512
REFUSABLE = ("roff_source", "texinfo_source", "svg_image", "source_map", "vendored_code", "api_dump", "pem_data",
             "minified")


class FilesSource(Source):
    """Every file under `roots`: logs, configs, docs, code. Symlinks to files are read; symlinked
    directories are not descended (no loops). Files that are binary, undecodable, unreadable,
    truncated or over `max_file_mb` become ledger entries with their reason.

    `render_roff`: man page sources become their rendered text (kind `doc`; false: refused as
    `roff_source`). `html_extractor`: `resiliparse` or `trafilatura` for HTML files (kind `doc`,
    the page's title in meta; null: refused as `html_source`). `refuse`: the formats that are
    ledger entries (default all of `REFUSABLE`); one left out is kept as its kind says, with
    `format` in its meta."""

    kind = "files"

    def __init__(self, name: str, roots: list[str], include: list[str] | None = None,
                 exclude: list[str] | None = None, max_file_mb: float = 16, max_line_chars: int = 20_000,
                 encodings: list[str] | None = None, unit_mb: float = 64, unit_files: int = 2000,
                 render_roff: bool = True, html_extractor: Literal["resiliparse", "trafilatura"] | None = "resiliparse",
                 refuse: list[str] | None = None):
        super().__init__(name)
        unknown = sorted(set(refuse or ()) - set(REFUSABLE))
        if unknown:
            raise ValueError(f"refuse: unknown format(s) {', '.join(unknown)}; known: {', '.join(REFUSABLE)}")
        self.render_roff, self.html_extractor = render_roff, html_extractor
        self.refuse = set(REFUSABLE if refuse is None else refuse)
        self.roots = [os.path.abspath(os.path.expanduser(r)) for r in roots]
        self.include, self.exclude = include or [], exclude or []
        self.max_bytes = int(max_file_mb * (1 << 20))
        self.max_line_chars = max_line_chars
        self.encodings = encodings or ["utf-8"]
        self.unit_bytes, self.unit_files = int(unit_mb * (1 << 20)), unit_files

    def _wanted(self, path: str) -> bool:
        if self.include and not any(fnmatch.fnmatch(path, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatch(path, p) for p in self.exclude)

    def _walk(self, root: str) -> Iterator[tuple[dict, int]]:
        if os.path.isfile(root) or not os.path.lexists(root) or not os.path.isdir(root):
            yield {"path": root}, _size(root)
            return
        errors: list[OSError] = []
        for directory, dirs, files in os.walk(root, onerror=errors.append):
            dirs.sort()
            for name in sorted(files):  # symlink loops and broken links are listed here too
                path = os.path.join(directory, name)
                if self._wanted(path):
                    yield {"path": path}, _size(path)
        for exc in errors:  # directories that could not be listed
            yield {"path": exc.filename, "error": "unreadable:permission_denied"
                   if isinstance(exc, PermissionError) else "unreadable:io_error", "detail": str(exc)}, 0

    def plan(self) -> list:
        items = [item for root in self.roots for item in sorted(self._walk(root), key=lambda i: i[0]["path"])]
        return group_by_size(items, self.unit_bytes, self.unit_files)

    def read(self, payload: list[dict]) -> Iterator[Result]:
        docs, bad, roff = [], [], []
        for item in payload:
            path = item["path"]
            uri = f"file://{path}"
            if "error" in item:
                bad.append(unreadable("file", uri, item["error"], item["detail"]))
                continue
            try:
                decoded = read_text(path, self.max_bytes, self.max_line_chars, self.encodings)
            except Unreadable as exc:
                bad.append(unreadable("file", uri, exc.reason, str(exc)))
                continue
            meta = {"path": path, "bytes": decoded.raw_bytes, "encoding": decoded.encoding}
            if decoded.compressed:
                meta["compressed"] = True
            if decoded.truncated_lines:
                meta["truncated_lines"] = decoded.truncated_lines
            doc = {"id": doc_id("file", uri), "text": decoded.text, "source": "file", "uri": uri,
                   "kind": classify(path, decoded.text), "meta": meta}
            refused = self._convert(doc, roff)
            if refused:
                bad.append(unreadable("file", uri, *refused, kind=doc["kind"]))
                continue
            docs.append(doc)
            if len(docs) >= BATCH_DOCS:
                yield Result(documents(self._finish(docs, roff, bad)))
                docs, roff = [], []
        yield Result(documents(self._finish(docs, roff, bad)), unreadable_table(bad))

    def _convert(self, doc: dict, roff: list[dict]) -> tuple[str, str] | None:
        """Turn markup into text (roff waits in `roff` for one groff run per batch); (reason,
        evidence) for a document that is refused."""
        found = source_format(doc["meta"]["path"], doc["text"], doc["kind"])
        if found is None:
            return None
        fmt, evidence = found
        if fmt == "roff":
            if not self.render_roff:
                return "roff_source", evidence
            roff.append(doc)
        elif fmt == "html":
            if self.html_extractor is None:
                return "html_source", evidence
            page = extract(doc["text"], self.html_extractor)
            if not page.text.strip():
                return "empty", f"no main text in the HTML ({self.html_extractor})"
            doc["text"], doc["kind"] = page.text, "doc"
            doc["meta"].update(converted="html", title=page.title)
        elif fmt in self.refuse:
            return fmt, evidence
        else:
            doc["meta"]["format"] = fmt
        return None

    def _finish(self, docs: list[dict], roff: list[dict], bad: list[dict]) -> list[dict]:
        """Render the batch's roff documents (a page that fails is a ledger entry) and write metas."""
        failed = set()
        for doc, text in zip(roff, _render(roff)):
            if isinstance(text, Unreadable):
                bad.append(unreadable("file", doc["uri"], text.reason, str(text), "doc"))
                failed.add(doc["id"])
                continue
            doc["meta"].update(converted="roff", **page_fields(doc["text"].encode(), text))
            doc["text"], doc["kind"] = text, "doc"
        out = [d for d in docs if d["id"] not in failed]
        for d in out:
            d["meta"] = json.dumps(d["meta"], sort_keys=True)
        return out


def _render(docs: list[dict]) -> list[str | Unreadable]:
    """Man page sources rendered in one groff run per man tree (`.so` requests resolve there)."""
    out: list[str | Unreadable | None] = [None] * len(docs)
    by_root: dict[str, list[int]] = {}
    for i, doc in enumerate(docs):
        real = os.path.realpath(doc["meta"]["path"])
        section = os.path.dirname(real)
        root = os.path.dirname(section) if SECTION_DIR.match(os.path.basename(section)) else section
        by_root.setdefault(root, []).append(i)
    for root, members in by_root.items():
        for i, text in zip(members, render_roff([docs[i]["text"].encode() for i in members], root)):
            out[i] = text
    return out


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
