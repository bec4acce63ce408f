"""Main text of an HTML page, with a maintained extractor: resiliparse (default) or trafilatura.

Both drop navigation, footers and sidebars by their own heuristics (Bevendorff et al., "An Empirical
Comparison of Web Content Extraction Algorithms", SIGIR 2023, compares them); bench/html_extract.py
measures them on the same real pages, and docs/benchmarks.md says why resiliparse is the default.
"""

from __future__ import annotations

import codecs
import html as html_lib
import re
from dataclasses import dataclass

EXTRACTORS = ("resiliparse", "trafilatura")
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.I)
HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


@dataclass
class Extracted:
    text: str
    title: str


def _install_hint(package: str, exc: ImportError) -> ImportError:
    return ImportError(f"HTML extraction with {package} needs it installed: pip install {package} ({exc})")


def charset_of(content_type: str | None, body: bytes) -> str | None:
    """The declared charset: the HTTP header's first, then a `<meta>` in the first 4 KiB."""
    for match in (HEADER_CHARSET.search(content_type or ""), META_CHARSET.search(body[:4096])):
        if match:
            name = match.group(1).decode("ascii", "replace") if isinstance(match.group(1), bytes) else match.group(1)
            try:
                return codecs.lookup(name).name
            except LookupError:
                continue
    return None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """The page as text and the encoding used: the declared one, else UTF-8, else cp1252."""
    declared = charset_of(content_type, body)
    for encoding in ([declared] if declared else []) + ["utf-8"]:
        try:
            return body.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return body.decode("cp1252", errors="replace"), "cp1252"


def _title(html: str) -> str:
    match = TITLE.search(html[:65536])
    return " ".join(html_lib.unescape(match.group(1)).split())[:300] if match else ""


def extract(html: str, extractor: str = "resiliparse") -> Extracted:
    if extractor == "resiliparse":
        try:
            from resiliparse.extract.html2text import extract_plain_text
            from resiliparse.parse.html import HTMLTree
        except ImportError as exc:
            raise _install_hint("resiliparse", exc) from None
        tree = HTMLTree.parse(html)
        text = extract_plain_text(tree, main_content=True, preserve_formatting=True, alt_texts=False,
                                  list_bullets=True, links=False, comments=False)
        return Extracted(_tidy(text), " ".join((tree.title or "").split())[:300] or _title(html))
    if extractor == "trafilatura":
        try:
            import trafilatura
        except ImportError as exc:
            raise _install_hint("trafilatura lxml_html_clean", exc) from None
        text = trafilatura.extract(html, include_comments=False, include_tables=True, deduplicate=False)
        return Extracted(_tidy(text or ""), _title(html))
    raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, not {extractor!r}")


def _tidy(text: str) -> str:
    """Strip trailing spaces and runs of blank lines that extractors leave behind."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    out, blank = [], 0
    for line in lines:
        blank = blank + 1 if not line else 0
        if blank <= 1:
            out.append(line)
    text = "\n".join(out).strip("\n")
    return text + "\n" if text else ""
