"""Man pages rendered to plain text with the machine's groff, one document per page.

Symlinked pages and `.so` stubs are aliases of another page: they become ledger entries
(`man_alias`, with the page's id) rather than a second copy of the same text.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator

from pipeline.schema import doc_id
from pipeline.source import Source, documents, unreadable, unreadable_table
from pipeline.stage import Result
from stages.ingest.decode import COMPRESSED, Unreadable, read_bytes

SECTION_DIR = re.compile(r"^man([0-9n][a-z0-9]*)$")
SO_LINE = re.compile(rb"^\.so\s+(\S+)\s*$", re.M)
PREPROCESSORS = {"t": ("-t", "tbl"), "e": ("-e", "eqn"), "p": ("-p", "pic"), "r": ("-R", "refer"),
                 "g": ("-g", "grn")}
PREPROCESSOR_LINE = re.compile(rb"^['.]\\\" ([tepgrv]+)\s*$")  # `'\" te`: run tbl and eqn
BATCH_DOCS = 256
RENDER_BATCH = 50
BREAK_MARK = "ZZSIGMAPAGEBREAKZZ"
PAGE_BREAK = f"\n.br\n{BREAK_MARK}\n.br\n".encode()
# Ragged right (no spaces added to justify lines) and no hyphenation: words stay whole for training,
# and a page renders the same whatever pages share its groff run.
PAGE_START = b".ad l\n.nh\n"
BREAK_LINE = re.compile(rf"^[ \t]*{BREAK_MARK}[ \t]*$", re.M)
TH_FIELDS = ("date", "source_package", "manual")


def page_name(filename: str) -> tuple[str, str]:
    """`ls.1.gz` -> ("ls", "1"); `CA.pl.1ssl.gz` -> ("CA.pl", "1ssl")."""
    base = filename
    for ext in COMPRESSED:
        if base.endswith(ext):
            base = base[: -len(ext)]
    name, _, section = base.rpartition(".")
    return (name, section) if name else (base, "")


class ManSource(Source):
    """Man pages under `roots` (man-db layout: `[locale/]manN/page.N[.gz]`).

    `locales`: which translations to read; "" is the untranslated pages, "*" all of them.
    `sections`: e.g. ["1", "5", "8"]; empty reads all.
    """

    kind = "man"

    def __init__(self, name: str, roots: list[str] | None = None, locales: list[str] | None = None,
                 sections: list[str] | None = None, include: list[str] | None = None,
                 exclude: list[str] | None = None, width: int = 80, unit_pages: int = 1000,
                 timeout_s: float = 60, max_file_mb: float = 8):
        super().__init__(name)
        self.roots = [os.path.abspath(r) for r in (roots or ["/usr/share/man"])]
        self.locales = [""] if locales is None else locales
        self.sections = sections or []
        self.include, self.exclude = include or [], exclude or []
        self.width, self.unit_pages, self.timeout_s = width, unit_pages, timeout_s
        self.max_bytes = int(max_file_mb * (1 << 20))

    def _section_dirs(self, root: str) -> Iterator[tuple[str, str]]:
        """(locale, directory) pairs under one root, sorted."""
        if not os.path.isdir(root):
            return
        for entry in sorted(os.listdir(root)):
            path = os.path.join(root, entry)
            if SECTION_DIR.match(entry) and "" in self.locales:
                yield "", path
            elif os.path.isdir(path) and not SECTION_DIR.match(entry) and ("*" in self.locales or entry in self.locales):
                for sub in sorted(os.listdir(path)):
                    if SECTION_DIR.match(sub):
                        yield entry, os.path.join(path, sub)

    def _wanted(self, filename: str, section_dir: str) -> bool:
        name, section = page_name(filename)
        if self.sections and SECTION_DIR.match(os.path.basename(section_dir)).group(1) not in self.sections:
            return False
        if self.include and not any(fnmatch.fnmatch(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatch(name, p) for p in self.exclude)

    def plan(self) -> list:
        if shutil.which("groff") is None:
            raise RuntimeError("the man source needs groff (Debian/Ubuntu: apt-get install groff-base)")
        pages = []
        for root in self.roots:
            for locale, directory in self._section_dirs(root):
                pages += [[root, locale, os.path.join(directory, f)] for f in sorted(os.listdir(directory))
                          if self._wanted(f, directory)]
        return [pages[i:i + self.unit_pages] for i in range(0, len(pages), self.unit_pages)]

    def read(self, payload: list) -> Iterator[Result]:
        pages, bad = [], []
        for root, locale, path in payload:
            uri = f"file://{path}"
            try:
                alias = self._alias_of(root, path)
                if alias is not None:
                    bad.append(unreadable("man", uri, "man_alias", doc_id("man", f"file://{alias}"), "doc"))
                    continue
                source = _inline_so(root, read_bytes(path, self.max_bytes)[0], self.max_bytes)
            except Unreadable as exc:
                bad.append(unreadable("man", uri, exc.reason, str(exc), "doc"))
                continue
            pages.append((root, locale, path, uri, source))
        texts = self._render_pages(pages)
        docs = []
        for (root, locale, path, uri, source), text in zip(pages, texts):
            if isinstance(text, Unreadable):
                bad.append(unreadable("man", uri, text.reason, str(text), "doc"))
                continue
            name, section = page_name(os.path.basename(path))
            meta = {"name": name, "section": section, "locale": locale, "path": path, "title": _title(text),
                    **_th_fields(source)}
            docs.append({"id": doc_id("man", uri), "text": text, "source": "man", "uri": uri, "kind": "doc",
                         "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False)})
            if len(docs) >= BATCH_DOCS:
                yield Result(documents(docs))
                docs = []
        yield Result(documents(docs), unreadable_table(bad))

    def _render_pages(self, pages: list) -> list[str | Unreadable]:
        """Render pages in batches of one groff run each (troff's start-up is most of a page's cost),
        grouped by the preprocessors they ask for; results in the input order."""
        out: list[str | Unreadable | None] = [None] * len(pages)
        groups: dict[tuple, list[int]] = {}
        for i, (root, _, _, _, source) in enumerate(pages):
            hint = PREPROCESSOR_LINE.match(source.split(b"\n", 1)[0])
            flags = tuple(_preprocessor_flags(hint.group(1).decode() if hint else "t"))
            groups.setdefault((root, flags), []).append(i)
        for (root, flags), members in groups.items():
            for start in range(0, len(members), RENDER_BATCH):
                batch = members[start:start + RENDER_BATCH]
                for i, text in zip(batch, self._render_batch(root, [pages[i][4] for i in batch], list(flags))):
                    out[i] = text
        return out

    def _render_batch(self, root: str, sources: list[bytes], flags: list[str]) -> list[str | Unreadable]:
        """One groff run over several pages, each followed by a break marker; if the run fails or a
        page swallows its marker (an unclosed table, say), each page is rendered alone instead."""
        cmd = ["groff", "-mandoc", "-Tutf8", "-Kutf-8", *flags, f"-rLL={self.width}n", f"-rLT={self.width}n", "-rHY=0",
               "-P", "-cbou"]
        try:
            out = subprocess.run(cmd, input=b"".join(PAGE_START + s + PAGE_BREAK for s in sources), capture_output=True,
                                 timeout=self.timeout_s * len(sources), cwd=root,
                                 env={**os.environ, "LC_ALL": "C.UTF-8"})
            failure = None if out.returncode == 0 else Unreadable(
                "render_failed", out.stderr.decode(errors="replace")[:500])
        except subprocess.TimeoutExpired:
            out, failure = None, Unreadable("render_timeout", f"groff took over {self.timeout_s} s a page")
        parts = BREAK_LINE.split(out.stdout.decode("utf-8", errors="replace")) if failure is None else []
        if failure is None and len(parts) == len(sources) + 1:
            return [_clean(part) for part in parts[:-1]]  # after the last marker: the footer
        if len(sources) == 1:
            return [failure or Unreadable("render_failed", "the page did not end where it should")]
        return [r for source in sources for r in self._render_batch(root, [source], flags)]

    def _alias_of(self, root: str, path: str) -> str | None:
        """The page this one only points at (a symlink, or a one-line `.so` stub), if any. A
        symlink to a page under no root (`psql.1.gz` -> `/etc/alternatives/psql.1.gz` ->
        `/usr/share/postgresql/15/man/...`) is that page: nothing else reads it."""
        if os.path.islink(path):
            target = os.path.realpath(path)
            if os.path.isfile(target) and any(target.startswith(os.path.realpath(r) + os.sep) for r in self.roots):
                return target
            return None  # broken or looping (reading it will say which), or a page only this link reaches
        data, _ = read_bytes(path, self.max_bytes)
        lines = [line for line in data.splitlines() if line.strip() and not line.startswith(b'.\\"')]
        if len(lines) == 1 and SO_LINE.match(lines[0]):
            return _resolve_so(root, SO_LINE.match(lines[0]).group(1).decode(errors="replace"))
        return None


def render_roff(sources: list[bytes], root: str, width: int = 80, timeout_s: float = 60) -> list[str | Unreadable]:
    """Man page sources found outside a man tree (the files source's roff files), rendered as the
    man source renders its pages: batched groff runs, `.so` requests resolved under `root`."""
    if shutil.which("groff") is None:
        return [Unreadable("render_failed", "groff is not installed (Debian/Ubuntu: apt-get install groff-base)")
                for _ in sources]
    renderer = ManSource("roff", [root], width=width, timeout_s=timeout_s)
    out: list[str | Unreadable | None] = [None] * len(sources)
    pages, at = [], []
    for i, source in enumerate(sources):
        try:
            pages.append((root, "", "", "", _inline_so(root, source, renderer.max_bytes)))
            at.append(i)
        except Unreadable as exc:
            out[i] = exc
    for i, text in zip(at, renderer._render_pages(pages)):
        out[i] = text
    return out


def page_fields(source: bytes, text: str) -> dict:
    """A rendered page's one-line description and its `.TH` fields (date, source package, manual)."""
    return {"title": _title(text), **_th_fields(source)}


@functools.cache
def _preprocessor_flags(letters: str) -> list[str]:
    """groff flags for the preprocessors a page asks for (tbl always), where they are installed."""
    return sorted({flag for c, (flag, tool) in PREPROCESSORS.items() if c in letters + "t" and shutil.which(tool)})


def _resolve_so(root: str, target: str) -> str | None:
    base = os.path.join(root, target)
    for candidate in [base] + [base + ext for ext in COMPRESSED]:
        if os.path.isfile(candidate):
            return os.path.realpath(candidate)
    return None


def _inline_so(root: str, source: bytes, max_bytes: int, depth: int = 0) -> bytes:
    """Replace `.so file` requests by the file's (decompressed) text; groff cannot read .gz itself."""
    if depth > 3 or b".so" not in source:
        return source

    def include(match: re.Match) -> bytes:
        target = _resolve_so(root, match.group(1).decode(errors="replace"))
        if target is None:
            return b""
        data, _ = read_bytes(target, max_bytes)
        return _inline_so(root, data, max_bytes, depth + 1)

    return SO_LINE.sub(include, source)


def _clean(rendered: str) -> str | Unreadable:
    text = "\n".join(line.rstrip() for line in rendered.split("\n")).strip("\n")
    if not text.strip():
        return Unreadable("render_empty", "groff rendered no text")
    return text + "\n"


def _th_fields(source: bytes) -> dict:
    """Date, source and manual from the page's `.TH title section date source manual` line."""
    match = re.search(rb"^\.TH\s+(.*)$", source, re.M)
    if not match:
        return {}
    try:
        args = shlex.split(match.group(1).decode("utf-8", errors="replace").replace("\\", "\\\\"))
    except ValueError:
        return {}
    return {k: v for k, v in zip(TH_FIELDS, args[2:]) if v}


def _title(text: str) -> str:
    """The one-line description from the NAME section: `ls - list directory contents`."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() == "NAME":
            body = []
            for nxt in lines[i + 1:]:
                if nxt and not nxt.startswith(" "):
                    break
                if nxt.strip():
                    body.append(nxt.strip())
            return " ".join(body)[:300]
    return ""
