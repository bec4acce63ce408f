"""A line format learned from the file itself, for logs whose header no known format matches.

A log line is a header (timestamp, level, process, component, ...) and a message; the header has
the same fields on every line, the message does not. So the fields of a sample of lines are read
column by column (white space, `|` and bracketed groups such as `[Sun Dec 04 04:47:44 2005]`
separate them), each column gets the narrowest type that almost every line agrees on, and the
header is the run of typed columns from the start of the line:

- strong columns: holding a digit (times, dates, ids, pids; a common shape such as `9-9-9` when
  there is one), a log level (`INFO`, `[error]`, `D`), a bracketed group, a `component:` that ends
  with a colon, or a lone separator (`-`);
- weak columns: one word (a host, a component without a colon): part of the header only when a
  strong column follows within three columns, or when the column is padded to a fixed width
  (two or more spaces after it on most lines).

The header ends after a column that ends it explicitly (a `component:` or a separator) if there is
one, else after the last strong column, then takes in padded weak columns. The timestamp is the
run of leading columns that read as a date or time. The result is a `LogFormat` whose regular
expression requires the first columns (those nearly every line matches) and takes the others
when they are there, so a line that lacks a late field still starts a record.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from stages.ingest.log_formats import LEVEL, UNKNOWN, LogFormat, detect

FIELD = re.compile(r"\[[^\]]*\]\S*|[^\s|]+")
LEVEL_WORD = re.compile(rf"^\[?(?:{LEVEL}|(?i:info|debug|warn|warning|error|notice|trace|fatal|critical))\]?:?$")
ONE_LETTER_LEVEL = re.compile(r"^[VDIWEFA]$")
TIME_LIKE = re.compile(r"^\d\d?$|\d\d?:\d\d|\d{4}[-./]\d\d?[-./]\d\d?|\d\d?[-/.]\d\d?\b|^\d{6}$|^\d{8}\b|^1\d{9}$|"
                       r"^\[?(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S",
                "%Y/%m/%d %H:%M:%S", "%y/%m/%d %H:%M:%S", "%y%m%d %H%M%S", "%b %d %H:%M:%S",
                "%a %b %d %H:%M:%S %Y", "%m-%d %H:%M:%S.%f", "%m.%d %H:%M:%S", "%Y%m%d-%H:%M:%S:%f",
                "%Y-%m-%d-%H.%M.%S.%f", "%d/%b/%Y:%H:%M:%S %z", "%d %b %Y %H:%M:%S", "epoch")
AGREE = 0.9  # the share of lines a column's type must hold on
REQUIRED = 0.98  # the share of lines the required (leading) columns must match
MAX_COLUMNS = 14
MAX_WEAK_RUN = 3
MIN_LINES = 20
ANY = r"[^\s|]+"
BRACKETED = r"\[[^\]]*\]\S*"
LEVEL_REGEX = rf"\[?(?:{LEVEL}|[VDIWEFA]|(?i:info|debug|warn|warning|error|notice|trace|fatal|critical))\]?:?"


def _shape(field: str) -> str:
    return re.sub(r"[A-Za-z]+", "a", re.sub(r"\d+", "9", field))


def _shape_regex(shape: str) -> str:
    return "".join(r"\d+" if c == "9" else "[A-Za-z]+" if c == "a" else re.escape(c) for c in shape)


def _column(fields: list[str], padded: float) -> tuple[str, str, str]:
    """(kind, strict regex, regex) of one column. Kinds: strong, end (a strong column that ends a
    header: a separator or a `component:`), weak or padded. The strict regex (the column's common
    shape) anchors a record's first line; elsewhere any field will do."""
    n = len(fields)

    def share(test) -> float:
        return sum(1 for f in fields if test(f)) / n

    top, count = Counter(fields).most_common(1)[0]
    if count / n >= AGREE and not re.search(r"[A-Za-z0-9]", top):
        return "end", re.escape(top), re.escape(top)  # a separator: `-`, `|`, `:`
    shape, count = Counter(map(_shape, fields)).most_common(1)[0]
    strict = _shape_regex(shape) if count / n >= AGREE else ANY
    if "9" in shape and count / n >= AGREE:
        return "strong", strict, ANY
    if share(lambda f: LEVEL_WORD.match(f) or ONE_LETTER_LEVEL.match(f)) >= AGREE:
        return "strong", LEVEL_REGEX, LEVEL_REGEX
    if share(lambda f: f.startswith("[") and "]" in f) >= AGREE:
        return "strong", BRACKETED, BRACKETED
    if share(lambda f: f.endswith(":") and len(f) > 1) >= AGREE:
        return "end", r"\S+:", r"\S+:"
    if share(lambda f: re.search(r"\d", f)) >= AGREE:
        return "strong", ANY, ANY
    return ("padded" if padded >= AGREE else "weak"), strict, ANY


def learn(lines: list[str]) -> LogFormat | None:
    """A format for `lines` (a file's first lines), or None when they show no header."""
    sample = [line for line in lines if line.strip() and not line[0].isspace()][:500]
    if len(sample) < MIN_LINES:
        return None
    split = [list(FIELD.finditer(line)) for line in sample]
    columns = []
    for k in range(MAX_COLUMNS):
        rows = [(line, m) for line, m in zip(sample, split) if len(m) > k + 1]
        if len(rows) < AGREE * len(sample):
            break
        fields = [m[k].group() for _, m in rows]
        seps = [line[m[k].end():m[k + 1].start()] for line, m in rows]
        sep = Counter(s.strip() or " " for s in seps).most_common(1)[0][0]
        padded = sum(len(s) >= 2 and not s.strip() for s in seps) / len(rows)
        kind, strict, regex = _column(fields, padded)
        columns.append((kind, strict, regex, r"\s+" if sep == " " else rf"\s*{re.escape(sep)}\s*", fields))
    end = _header_end(columns)
    if end == 0 or not any(kind == "strong" for kind, *_ in columns[:end]):
        return None  # no header: nothing with a number, a level or a bracket in it
    return _format([line for line in lines if line.strip() and not line[0].isspace()], columns[:end])


def _header_end(columns: list[tuple]) -> int:
    last_strong = last_end = 0
    weak_run = 0
    for k, (kind, *_) in enumerate(columns):
        if kind in ("weak", "padded"):
            weak_run += 1
            if weak_run >= MAX_WEAK_RUN:
                break
            continue
        weak_run = 0
        last_strong = k + 1
        if kind == "end" and k > 0:
            last_end = k + 1
    end = last_end or last_strong
    while end < len(columns) and columns[end][0] == "padded":
        end += 1
    return end


def _format(lines: list[str], columns: list[tuple]) -> LogFormat | None:
    sep = [c[3] for c in columns]
    col = [f"(?:{c[2]})" for c in columns]
    for k, c in enumerate(columns):  # weak fields before a separator that ends the header: as many as there are
        if c[0] == "end" and k > 0 and columns[k - 1][0] in ("weak", "padded"):
            col[k - 1] = rf"(?:{ANY}(?:\s+{ANY})*?)"
    start, times, formats = _timestamp(lines, columns)
    col[0] = f"(?:{columns[0][1]})" if not times else col[0]
    for k in range(start, start + times):
        col[k] = f"(?:{columns[k][1]})"
    required = len(col)
    while required > max(1, start + times):  # what nearly every line matches is required; the rest optional
        prefix = re.compile("^" + "".join(c + s for c, s in zip(col[:required], sep)))
        if sum(bool(prefix.match(line)) for line in lines) >= REQUIRED * len(lines):
            break
        required -= 1
    head = "".join(col[k] + sep[k] for k in range(start))
    if times:
        head += "(?P<ts>" + "".join(col[k] + (sep[k] if k < start + times - 1 else "")
                                    for k in range(start, start + times)) + ")" + sep[start + times - 1]
    head += "".join(col[k] + sep[k] for k in range(start + times, required))
    tail = ""
    for k in reversed(range(required, len(col))):
        tail = f"(?:{col[k]}{sep[k]}{tail})?"
    header = re.compile("^" + head + tail + r"(?P<msg>.*)$")
    if sum(bool(header.match(line)) for line in lines) < REQUIRED * len(lines):
        return None
    return LogFormat("learned", header, formats)


def _timestamp(lines: list[str], columns: list[tuple]) -> tuple[int, int, tuple[str, ...]]:
    """(first column, number of columns, strptime formats) of the timestamp: the leading run of
    columns (starting within the first few) that read as one date and time."""
    for start in range(min(6, len(columns))):
        run = 0
        while start + run < len(columns) and columns[start + run][0] != "end" and \
                all(TIME_LIKE.search(f) for f in columns[start + run][4][:200]):
            run += 1
        for times in range(run, 0, -1):
            stamps = [" ".join(f[i] for f in (c[4] for c in columns[start:start + times]))
                      for i in range(min(50, len(columns[start][4])))]
            formats = _time_formats(stamps)
            if formats:
                return start, times, formats
    return 0, 0, ()


def _time_formats(stamps: list[str]) -> tuple[str, ...]:
    for fmt in TIME_FORMATS:
        for variant in (fmt, f"[{fmt}]", f"{fmt}.", f"{fmt}:"):
            if all(_parses(s, variant) for s in stamps):
                return (variant,)
    return ()


def _parses(stamp: str, fmt: str) -> bool:
    if fmt == "epoch":
        return stamp.replace(".", "", 1).isdigit() and len(stamp.split(".")[0]) == 10
    try:
        datetime.strptime(stamp.replace(",", "."), fmt)
        return True
    except ValueError:
        return False


def format_of(lines: list[str]) -> LogFormat:
    """The known format that matches `lines` (`log_formats.detect`), else one learned from them,
    else `unknown`."""
    known = detect(lines)
    return known if known is not UNKNOWN else learn(lines) or UNKNOWN


def learned(header: str, time_formats: list[str]) -> LogFormat:
    """A learned format again, from its pattern and time formats (a work unit carries them)."""
    return LogFormat("learned", re.compile(header), tuple(time_formats))
