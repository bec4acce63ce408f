"""Checks that fit system data, where prose rules do not: logs repeat themselves by nature and
configs have no sentences.

Every kind: the share of printable characters, the share of characters in over-long lines, and
the share of characters in encoded blobs (base64 or hex runs: certificates, embedded binaries,
minified payloads). Logs: the share of distinct lines and the number of distinct templates (a
line with its variables masked by stages/variable_mask.py, as Drain-style log parsers (He et
al. 2017) group events), so a log that is one line repeated is dropped while a real daemon log,
with few templates but varying fields, is kept. Configs: whether a structured format (JSON,
YAML, TOML, XML) parses, and the share of lines that look like configuration (comments,
sections, `key = value`, `key value` directives, tags, braces, list items).
"""

from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pyarrow as pa
import yaml

from pipeline.stage import Rule
from stages.quality import text_measures
from stages.quality.rule_filter import RuleFilter
from stages.variable_mask import mask_digits

P = "quality.system."
F32 = pa.float32()
NON_PRINTABLE = re.compile(text_measures.NON_PRINTABLE)
BLOB = re.compile(r"[A-Za-z0-9+/=_\-]{64,}")
CONFIG_LINE = re.compile(
    r"""^\s*(
        [#;!%"]|//|--|/\*|\*|                         # comments (" is vim's)
        \[[^\]]*\]\s*$|                                # [section]
        <[/!?]?[\w:.\-]+[^>]*>?|                       # <tag ...>
        [\w.\-/@$*"']+\s*(=|:|\+=|:=|=>)\s*.*|         # key = value, key: value
        [\w.\-/@$*]+(\s+\S.*)?$|                       # key value (nginx, sshd, apache directives)
        [{}\[\](),;]+\s*$|                             # braces
        -\s+.*|                                        # YAML list item
        \S.*\\$|\s+\S.*                                # continuation, indented values
    )""", re.X)
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".xml": "xml"}


def config_format(uri: str | None) -> str | None:
    if not uri:
        return None
    name = uri.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    dot = name.rfind(".")
    return FORMATS.get(name[dot:]) if dot >= 0 else None


def parses(text: str, fmt: str) -> bool:
    try:
        if fmt == "json":
            json.loads(text)
        elif fmt == "yaml":
            list(yaml.safe_load_all(text))
        elif fmt == "toml":
            tomllib.loads(text)
        elif fmt == "xml":
            ET.fromstring(text.encode())
        return True
    except Exception:  # any parser error means "does not parse"; the detail is not needed
        return False


class SystemChecks(RuleFilter):
    """System-data checks (see the module docstring). Reasons: `low_printable`, `long_lines`,
    `encoded_blob` (every kind); `log_repeated_lines`, `log_few_templates` (logs of at least
    `min_log_lines` lines); `config_unparseable`, `config_not_config` (configs). Thresholds are
    keywords; `None` disables one. `kinds` limits the checks to some kinds (default: all)."""

    name = "system_checks"
    signals = {P + "printable": F32, P + "long_line_chars": F32, P + "blob_chars": F32,
               P + "lines": pa.int32(), P + "unique_lines": F32, P + "templates": pa.int32(),
               P + "parses": pa.int8(), P + "config_lines": F32}
    rules = (
        Rule("low_printable", P + "printable", "min", "min_printable"),
        Rule("encoded_blob", P + "blob_chars", "max", "max_blob_chars"),
        Rule("long_lines", P + "long_line_chars", "max", "max_long_line_chars"),
        Rule("log_repeated_lines", P + "unique_lines", "min", "min_log_unique_lines"),
        Rule("log_few_templates", P + "templates", "min", "min_log_templates"),
        Rule("config_unparseable", P + "parses", "min", "require_parse", fixed=1),
        Rule("config_not_config", P + "config_lines", "min", "min_config_lines"),
    )

    def __init__(self, min_printable: float | None = 0.95, max_blob_chars: float | None = 0.5,
                 long_line: int = 1000, max_long_line_chars: float | None = 0.5,
                 min_log_lines: int = 20, min_log_unique_lines: float | None = 0.05,
                 min_log_templates: int | None = 2, require_parse: bool = True,
                 min_config_lines: float | None = 0.5, kinds: Sequence[str] | None = None):
        super().__init__(kinds)
        self.min_printable, self.max_blob_chars = min_printable, max_blob_chars
        self.long_line, self.max_long_line_chars = long_line, max_long_line_chars
        self.min_log_lines = min_log_lines
        self.min_log_unique_lines, self.min_log_templates = min_log_unique_lines, min_log_templates
        self.require_parse, self.min_config_lines = require_parse, min_config_lines

    def measure(self, text: str, kind=None, uri=None) -> dict[str, float]:
        chars = max(len(text), 1)
        rows = text.split("\n")
        out = {
            P + "printable": 1 - len(NON_PRINTABLE.findall(text)) / chars,
            P + "long_line_chars": sum(len(r) for r in rows if len(r) > self.long_line) / chars,
            P + "blob_chars": sum(len(m) for m in BLOB.findall(text)) / chars,
        }
        nonblank = [r for r in rows if r.strip()]
        out[P + "lines"] = len(nonblank)
        if kind == "log" and len(nonblank) >= self.min_log_lines:
            out[P + "unique_lines"] = len(set(nonblank)) / len(nonblank)
            out[P + "templates"] = len({mask_digits(r) for r in nonblank})
        if kind == "config" and nonblank:
            fmt = config_format(uri)
            if fmt is not None:
                out[P + "parses"] = int(parses(text, fmt))
            else:
                out[P + "config_lines"] = sum(bool(CONFIG_LINE.match(r)) for r in nonblank) / len(nonblank)
        return out

