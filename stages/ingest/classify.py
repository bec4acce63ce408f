"""Classify a system file as log, config, doc, code or other: by its name first, then its content."""

from __future__ import annotations

import os
import re

CODE_EXT = {".py", ".sh", ".bash", ".zsh", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".go", ".rs", ".java",
            ".js", ".mjs", ".ts", ".pl", ".pm", ".rb", ".php", ".lua", ".awk", ".sed", ".el", ".vim", ".tcl",
            ".mk", ".cmake", ".s", ".scm", ".hs", ".ml", ".swift", ".kt", ".scala", ".sql", ".r", ".ps1"}
CONFIG_EXT = {".conf", ".cfg", ".cnf", ".ini", ".yaml", ".yml", ".toml", ".json", ".service", ".socket",
              ".timer", ".target", ".mount", ".path", ".slice", ".rules", ".properties", ".env", ".network",
              ".netdev", ".link", ".xml", ".desktop", ".list", ".sources", ".repo", ".preset"}
DOC_EXT = {".md", ".rst", ".txt", ".html", ".htm", ".adoc", ".tex", ".org", ".texi", ".pod", ".1", ".5",
           ".8", ".info"}
LOG_EXT = {".log", ".err", ".out"}
DOC_NAMES = re.compile(r"^(readme|news|changelog|changes|copyright|copying|license|licence|install|authors|"
                       r"thanks|todo|faq|history|notice|bugs|credits)", re.I)
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
