"""Classify a system file as log, config, doc, code or other: by its name first, then its content;
and say when a file is written in a form that is not text to learn from as it is (`source_format`)."""

from __future__ import annotations

import os
import re

from pipeline.audit import LONG_LINE, MINIFIED_SPACES, ROFF_REQUEST, TEXINFO_COMMAND, minified

CODE_EXT = {".py", ".sh", ".bash", ".zsh", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".go", ".rs", ".java",
            ".js", ".mjs", ".ts", ".pl", ".pm", ".rb", ".php", ".lua", ".awk", ".sed", ".el", ".vim", ".tcl",
            ".mk", ".cmake", ".s", ".scm", ".hs", ".ml", ".swift", ".kt", ".scala", ".sql", ".r", ".ps1", ".css"}
CONFIG_EXT = {".conf", ".cfg", ".cnf", ".ini", ".yaml", ".yml", ".toml", ".json", ".service", ".socket",
              ".timer", ".target", ".mount", ".path", ".slice", ".rules", ".properties", ".env", ".network",
              ".netdev", ".link", ".xml", ".desktop", ".list", ".sources", ".repo", ".preset"}
DOC_EXT = {".md", ".rst", ".txt", ".html", ".htm", ".adoc", ".tex", ".org", ".texi", ".pod", ".1", ".5",
           ".8", ".info"}
LOG_EXT = {".log", ".err", ".out"}
DOC_NAMES = re.compile(r"^(readme|news|changelog|changes|copyright|copying|license|licence|install|authors|"
                       r"thanks|todo|faq|history|notice|bugs|credits|problems)", re.I)
CODE_NAMES = {"makefile", "gnumakefile", "cmakelists.txt", "dockerfile", "configure", "rakefile"}
LOG_NAMES = re.compile(r"^(syslog|messages|kern|auth|daemon|dmesg|debug|alternatives|dpkg|bootstrap)"
                       r"(\.log)?(\.\d+)?$", re.I)
ROTATED = re.compile(r"\.\d+$")
TIMESTAMP = re.compile(
    r"^\s*(\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\[?\d{2,4}[/.-]\d\d[/.-]\d\d[ ,T]\d\d:\d\d|"
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\[\s*\d+\.\d+\]|\d{10}(\.\d+)?\s|\d{6} \d{6}|"
    r"\[?[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)")
KEY_VALUE = re.compile(r"^\s*([\w.\-/]+\s*(=|:|\s)\s*\S.*|\[[^\]]+\]|<[/\w][^>]*>)\s*$")
CODE_LINE = re.compile(r"(^\s*(def|class|import|from|function|fn|func|public|private|static|#include|"
                       r"return|if|for|while|var|let|const)\b|[;{}]\s*$)")


def _base(path: str) -> tuple[str, str]:
    """The file name without compression or rotation suffixes, and its extension."""
    name = os.path.basename(path).lower()
    for suffix in (".gz", ".bz2", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = ROTATED.sub("", name)
    return name, os.path.splitext(name)[1]


def _share(lines: list[str], pattern: re.Pattern) -> float:
    return sum(bool(pattern.search(line)) for line in lines) / len(lines) if lines else 0.0


def classify(path: str, text: str) -> str:
    name, ext = _base(path)
    if "/etc/" in path and ext not in CODE_EXT and not text.startswith("#!"):
        return "config"
    if ext in LOG_EXT or LOG_NAMES.match(name):
        return "log"
    if ext in CODE_EXT or name in CODE_NAMES:
        return "code"
    if ext in CONFIG_EXT:
        return "config"
    if ext in DOC_EXT or DOC_NAMES.match(name):
        return "doc"
    head = [line for line in text[:20000].split("\n")[:60] if line.strip()]
    if text.startswith("#!"):
        return "code"
    if _share(head, TIMESTAMP) >= 0.5:
        return "log"
    body = [line for line in head if not line.lstrip().startswith(("#", ";", "//"))]
    if "/etc/" in path or "/var/log/" in path:
        return "config" if "/etc/" in path else "log"
    if body and _share(body, KEY_VALUE) >= 0.6:
        return "config"
    if body and _share(body, CODE_LINE) >= 0.3:
        return "code"
    letters = sum(c.isalpha() or c == " " for c in text[:5000])
    return "doc" if letters / max(1, len(text[:5000])) > 0.7 else "other"


# `source_format`: markup to render, and code or data that a program wrote rather than a person
HTML_EXT = {".html", ".htm", ".xhtml", ".shtml"}
HTML_HEAD = re.compile(r"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S)
ROFF_PAGE = re.compile(r"^\.(?:TH|Dd)[ \t]", re.M)
PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
HTML_IN_JSON = re.compile(r'"[^"\n]{0,40}":\s*"[^"\n]*<(?:p|code|pre|a|ul|li|h\d|em|strong)\b')
SOURCE_MAP = re.compile(r'^\s*\{\s*"version"\s*:\s*3\s*,.*"mappings"', re.S)
VENDORED_NAMES = re.compile(r"^(?:jquery|underscore|bootstrap|lodash|backbone|modernizr|require|angular|react|vue|"
                            r"d3|moment|popper|mathjax|highlight|prism|prettify|clipboard)(?:[.\-][\w.\-]*)?\.(?:js|css)$|"
                            r"\.min\.(?:js|css)$")
ASSET_DIRS = {"_static", "_assets", "assets", "api_assets", "static"}


def source_format(path: str, text: str, kind: str | None = None) -> tuple[str, str] | None:
    """(format, evidence) for a file that is not text to learn from as it is, else None. To
    convert: `roff` (a man page's source, `.TH`/`.Dd`: render it), `html` (extract its main
    text). To refuse, named as the ledger's reasons: `roff_source` (other roff: macro files),
    `texinfo_source`, `svg_image`, `source_map`, `vendored_code` (a copy of a JavaScript or CSS
    library, or an HTML documentation's assets), `api_dump` (JSON whose strings hold HTML: docs a
    generator turned into data), `pem_data` (certificates and keys: PEM blocks are half the
    text or more), `minified` (code or data whose lines run to a thousand characters and more
    with few spaces; never a log, whose long lines are events). The line patterns are the
    audit's (`pipeline/audit.py`)."""
    name, ext = _base(path)
    head = text[:20000]
    if ext == ".svg" or (ext in (".xml", "") and "<svg" in head[:2000]):
        return "svg_image", "an SVG image"
    if ext in HTML_EXT or HTML_HEAD.match(head):
        return "html", "HTML"
    if ext == ".map" or SOURCE_MAP.match(head):
        return "source_map", "a JavaScript source map"
    if ext in (".js", ".css") and (VENDORED_NAMES.search(name) or ASSET_DIRS & set(path.split("/")[:-1])):
        what = "a copy of a library" if VENDORED_NAMES.search(name) else "an HTML documentation's assets"
        return "vendored_code", f"{name}: {what}"
    nonblank = sum(bool(line.strip()) for line in head.split("\n"))
    requests = len(re.findall(ROFF_REQUEST, head))
    if requests >= 5 and ROFF_PAGE.search(head):  # `.TH`/`.Dd` and requests: a page, however long its lines
        return "roff", "a man page's roff source"
    if requests >= 5 and requests >= 0.2 * nonblank:
        return "roff_source", f"roff source ({requests} of {nonblank} lines are requests), not a man page"
    if len(re.findall(TEXINFO_COMMAND, head)) >= 3:
        return "texinfo_source", "Texinfo source"
    if (ext == ".json" or head.lstrip()[:1] in ("{", "[")) and len(HTML_IN_JSON.findall(text)) >= 3:
        return "api_dump", "JSON whose strings hold HTML: documentation a generator turned into data"
    if "-----BEGIN " in text:
        blocks = [(m.group(1), m.end() - m.start()) for m in PEM.finditer(text)]
        share = sum(n for _, n in blocks) / len(text)
        if share >= 0.5:
            names = ", ".join(sorted({name for name, _ in blocks}))
            return "pem_data", f"{len(blocks)} PEM block(s) ({names}), {share:.0%} of the text"
    if kind == "log":
        return None
    chars, spaces = minified(text)
    if chars >= 0.5 * len(text) and spaces < MINIFIED_SPACES * chars:
        return "minified", f"{chars:,} of {len(text):,} characters in lines of {LONG_LINE:,} or more"
    return None
