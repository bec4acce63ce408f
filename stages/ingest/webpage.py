"""One fetched web response -> a document, or the reason it yields none.

Shared by the WARC source and the crawler, so a crawl and the re-ingest of the WARC it wrote give
the same documents: the id is a hash of the WARC record id, which names one capture of one URL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pipeline.schema import KINDS, doc_id
from stages.ingest.html_text import decode_html, extract

HTML_TYPES = ("text/html", "application/xhtml+xml")
# A WARC extension field the crawler sets on a response it took no document from (a duplicate, a
# noindex page): `<reason> <detail>`. The WARC source honours it, so a re-read matches the crawl.
DROPPED_FIELD = "Sigma-Dropped"
DEFAULT_TYPES = [*HTML_TYPES, "text/plain"]


class NoDocument(Exception):
    """A response that yields no document: `reason` is machine-readable (`http_status:404`, ...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class Response:
    url: str
    date: str  # ISO 8601, as in WARC-Date
    record_id: str  # the WARC-Record-ID of the capture
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # the payload, transfer and content encodings undone
    extra_meta: dict = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


@dataclass
class PagePolicy:
    """What a response must be to become a document."""

    extractor: str = "resiliparse"
    content_types: list[str] = field(default_factory=lambda: list(DEFAULT_TYPES))
    max_bytes: int = 8 << 20
    kind: str = "web"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

    def accepts_type(self, content_type: str | None) -> bool:
        return media_type(content_type) in self.content_types

    def document(self, response: Response, source: str) -> dict:
        """The document for `response`, or NoDocument with the reason."""
        if not 200 <= response.status < 300:
            raise NoDocument(f"http_status:{response.status}", f"{response.status} for {response.url}")
        content_type = response.header("content-type")
        if not self.accepts_type(content_type):
            raise NoDocument("wrong_content_type", f"{media_type(content_type) or 'no content type'} "
                             f"(wanted {', '.join(self.content_types)})")
        if len(response.body) > self.max_bytes:
            raise NoDocument("too_large", f"{len(response.body)} bytes, over the cap of {self.max_bytes}")
        html, encoding = decode_html(response.body, content_type)
        is_html = media_type(content_type) in HTML_TYPES
        if is_html:
            page = extract(html, self.extractor)
            text, title = page.text, page.title
        else:
            text, title = html.strip() + "\n" if html.strip() else "", ""
        if not text.strip():
            raise NoDocument("no_text", f"the {self.extractor} extractor found no main text")
        meta = {
            "url": response.url, "fetch_date": response.date, "status": response.status,
            "http_headers": _header_dict(response.headers), "content_type": media_type(content_type),
            "encoding": encoding, "title": title, "extractor": self.extractor if is_html else None,
            "warc_record_id": response.record_id, **response.extra_meta,
        }
        return {"id": doc_id("web", response.record_id), "text": text, "source": source, "uri": response.url,
                "kind": self.kind, "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)}


def _header_dict(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Header names lower-cased; repeated headers joined with ", " (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for k, v in headers:
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out
