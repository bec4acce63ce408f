"""What should not be in training text, counted in a curate output's kept documents: markup
source (roff, Texinfo, HTML), minified code, PEM blocks, long base64 runs and over-long lines,
per kind, with a sample of each. `sigma stats` and the report show it; `sigma audit OUT` prints
it with its samples and exits 1 when anything matched.

Each check is a pattern and the number of its matches that makes a document count (one HTML tag
in a page about HTML is not HTML source; ten are), matched with Arrow's RE2 (`count_substring_
regex`) over whole batches; `minified` is a long line with few spaces, looked at in Python only
in the documents that have a long line. The patterns are also the ingest's (`stages/ingest/
classify.py`), so what the audit finds is what the files source should have rendered or refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# a roff request or comment at the start of a line: `.TH`, `.SH`, `.B`, `.\"`, `'\"`
ROFF_REQUEST = r"(?m)^(?:\.[ \t]*(?:[A-Za-z]{1,3}(?:[ \t]|$)|\\\")|'\\\")"
TEXINFO_COMMAND = (r"(?m)^(?:\\input texinfo|@(?:node|chapter|section|subsection|setfilename|top|menu|end|item|"
                   r"table|example|cindex|deffn)\b)")
# tags of HTML text: an opening tag of more than one letter, a one-letter one with attributes (`<a
# href=...>`; `<a>`, `<I>` are placeholders in prose), any closing one
_TAGS = "html|head|body|div|span|table|tr|td|th|li|ul|ol|pre|code|h[1-6]|br|img|script|style|meta|link|em|strong|tt|dl|dt|dd"
HTML_TAG = rf"<(?i:{_TAGS})\b[^>\n]*>|<(?i:p|a|b|i)[ \t][^>\n]*>|</(?i:{_TAGS}|p|a|b|i)>"
PEM_BLOCK = r"-----BEGIN [A-Z0-9 ]+-----"
BASE64_RUN = r"[A-Za-z0-9+/]{200}"
LONG_LINE = 1000  # characters: the default of `--max-line-chars`
MINIFIED_SPACES = 0.1  # a long line with fewer spaces than this share is code or data a program wrote


def minified(text: str, long_line: int = LONG_LINE) -> tuple[int, int]:
    """(characters in lines of `long_line` or more, spaces among them)."""
    lines = [line for line in text.split("\n") if len(line) >= long_line]
    return sum(map(len, lines)), sum(line.count(" ") for line in lines)


@dataclass(frozen=True)
class Check:
    name: str
    pattern: str | None  # RE2 and Python syntax alike; None: `minified`, from the long lines
    min_matches: int
    what: str


def checks(max_line_chars: int = LONG_LINE) -> tuple[Check, ...]:
    return (
        Check("roff", ROFF_REQUEST, 5, "roff source: 5+ lines that are requests (.TH, .SH, .B, .\\\")"),
        Check("texinfo", TEXINFO_COMMAND, 3, "Texinfo source: 3+ lines that are commands (@node, @chapter, ...)"),
        Check("html", HTML_TAG, 10, "HTML markup: 10+ tags"),
        Check("minified", None, 1, f"a line of {max_line_chars:,}+ characters with under "
                                   f"{MINIFIED_SPACES:.0%} spaces (minified code, one-line data; not in logs)"),
        Check("pem", PEM_BLOCK, 1, "a PEM block (-----BEGIN ...-----)"),
        Check("base64", BASE64_RUN, 1, "a base64 run of 200+ characters"),
        Check("long_line", f"[^\\n]{{{max_line_chars}}}", 1, f"a line of {max_line_chars:,}+ characters"),
    )


@dataclass
class Audit:
    """Counts per check and kind, and the samples with the smallest ids; audits of parts add up."""

    max_line_chars: int = LONG_LINE
    samples: int = 3
    documents: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    found: dict[str, list[dict]] = field(default_factory=dict)

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """`batch`: columns `id`, `uri`, `kind`, `text` of kept documents."""
        text = batch.column("text")
        kinds = np.asarray(batch.column("kind").to_pylist(), dtype=object)
        self.documents += batch.num_rows
        hits: dict[str, np.ndarray] = {}
        for check in checks(self.max_line_chars):
            if check.pattern is None:
                continue
            counts = pc.count_substring_regex(text, check.pattern).fill_null(0)
            hits[check.name] = counts.to_numpy(zero_copy_only=False) >= check.min_matches
        long_rows = np.flatnonzero(hits["long_line"] & (kinds != "log"))  # a log's long lines are events
        hits["minified"] = np.zeros(batch.num_rows, bool)
        for i in long_rows:
            chars, spaces = minified(text[int(i)].as_py(), self.max_line_chars)
            hits["minified"][i] = spaces < MINIFIED_SPACES * chars
        for name, mask in hits.items():
            rows = np.flatnonzero(mask)
            if not len(rows):
                continue
            per_kind = self.counts.setdefault(name, {})
            for kind in kinds[rows]:
                per_kind[str(kind)] = per_kind.get(str(kind), 0) + 1
            self._sample(name, batch, rows)

    def _sample(self, name: str, batch, rows: np.ndarray) -> None:
        ids = batch.column("id").take(pa.array(rows)).to_pylist()
        chosen = sorted(zip(ids, rows.tolist()))[:self.samples]
        kept = self.found.setdefault(name, [])
        kept += [{"id": doc_id, "uri": batch.column("uri")[i].as_py(), "kind": batch.column("kind")[i].as_py(),
                  "excerpt": self._excerpt(name, batch.column("text")[i].as_py())} for doc_id, i in chosen]
        kept.sort(key=lambda s: s["id"])
        del kept[self.samples:]

    def _excerpt(self, name: str, text: str) -> str:
        check = next(c for c in checks(self.max_line_chars) if c.name == name)
        if check.pattern is None:
            match = re.search(f"[^\\n]{{{self.max_line_chars}}}", text)
        else:
            match = re.search(check.pattern, text)
        start = match.start() if match else 0
        return text[max(0, start - 40):start + 120].replace("\n", "\\n")

    def merge(self, other: Audit) -> None:
        self.documents += other.documents
        for name, per_kind in other.counts.items():
            mine = self.counts.setdefault(name, {})
            for kind, n in per_kind.items():
                mine[kind] = mine.get(kind, 0) + n
        for name, samples in other.found.items():
            kept = self.found.setdefault(name, [])
            kept += samples
            kept.sort(key=lambda s: s["id"])
            del kept[self.samples:]

    def to_dict(self) -> dict:
        return {"documents": self.documents, "max_line_chars": self.max_line_chars,
                "checks": {c.name: {"what": c.what, "documents": sum(self.counts.get(c.name, {}).values()),
                                    "by_kind": dict(sorted(self.counts.get(c.name, {}).items())),
                                    "samples": self.found.get(c.name, [])}
                           for c in checks(self.max_line_chars)}}


def audit_output(root, max_line_chars: int = LONG_LINE, samples: int = 3) -> dict:
    """The audit of a curate output's shards, read batch by batch."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from pipeline.manifest import read_manifest

    root = Path(root)
    audit = Audit(max_line_chars, samples)
    for record in read_manifest(root)["files"]:
        for batch in pq.ParquetFile(root / record["path"]).iter_batches(batch_size=8192,
                                                                         columns=["id", "uri", "kind", "text"]):
            audit.add(batch)
    return audit.to_dict()


def render_audit(audit: dict, console, show_samples: bool = True) -> None:
    """A table of checks by kind, then what each check looks for, with its samples."""
    from rich.table import Table

    kinds = sorted({k for c in audit["checks"].values() for k in c["by_kind"]})
    t = Table(title=f"audit: kept documents that hold what training text should not ({audit['documents']:,} read)",
              title_justify="left", title_style="bold")
    for i, column in enumerate(["check", *kinds, "total"]):
        t.add_column(column, justify="left" if i == 0 else "right")
    for name, c in audit["checks"].items():
        total = f"[red]{c['documents']:,}[/red]" if c["documents"] else "0"
        t.add_row(name, *(f"{c['by_kind'].get(k, 0):,}" for k in kinds), total)
    console.print(t)
    for name, c in audit["checks"].items():
        if c["documents"]:
            console.print(f"  {name}: {c['what']}", markup=False, highlight=False)
            for s in c["samples"] if show_samples else []:
                console.print(f"    {s['uri']} ({s['kind']}): {s['excerpt']!r}", markup=False, highlight=False)
