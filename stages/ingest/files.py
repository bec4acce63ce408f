"""Ingest a local directory tree: one document per readable text file, a ledger entry for the rest."""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator

from pipeline.schema import doc_id
from pipeline.source import Source, documents, group_by_size, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.classify import classify
from stages.ingest.decode import Unreadable, read_text

BATCH_DOCS = 512


class FilesSource(Source):
    """Every file under `roots`: logs, configs, docs, code. Symlinks to files are read; symlinked
    directories are not descended (no loops). Files that are binary, undecodable, unreadable,
    truncated or over `max_file_mb` become ledger entries with their reason."""

    kind = "files"

    def __init__(self, name: str, roots: list[str], include: list[str] | None = None,
                 exclude: list[str] | None = None, max_file_mb: float = 16, max_line_chars: int = 20_000,
                 encodings: list[str] | None = None, unit_mb: float = 64, unit_files: int = 2000):
        super().__init__(name)
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
        docs, bad = [], []
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
            docs.append({"id": doc_id("file", uri), "text": decoded.text, "source": "file", "uri": uri,
                         "kind": classify(path, decoded.text), "meta": json.dumps(meta, sort_keys=True)})
            if len(docs) >= BATCH_DOCS:
                yield Result(documents(docs))
                docs = []
        yield Result(documents(docs), unreadable_table(bad))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
