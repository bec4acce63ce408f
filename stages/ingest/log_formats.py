"""Log formats: how a record starts, where its timestamp is, and where its message begins.

A format is a regular expression for the first line of a record, with the groups `ts` (the
timestamp) and `msg` (the message, what template mining reads). A file's format is the one that
matches most of its first lines; lines that match no header belong to the record above them
(stack traces, continuation lines). The headers follow the formats of the systems in Loghub
(Zhu et al., ISSRE 2023) and of common system logs (RFC 3164 and 5424 syslog, Apache and nginx,
log4j, Python logging, glog, dmesg, JSON lines).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
ISO = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
LEVEL = r"(?:TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|SEVERE|FATAL|CRITICAL|CRIT|ALERT|EMERG)"


@dataclass(frozen=True)
class LogFormat:
    name: str
    header: re.Pattern
    time_formats: tuple[str, ...] = ()  # strptime formats for `ts`; "epoch" for seconds since 1970

    def parse_time(self, ts: str | None) -> float | None:
        """Seconds since the epoch, UTC; a timestamp without a year is taken to be in 2000 (a
        leap year), which keeps differences right within a file."""
        if not ts:
            return None
        ts = ts.strip()
        for fmt in self.time_formats:
            if fmt == "epoch":
                try:
                    return float(ts)
                except ValueError:
                    continue
            try:
                dt = datetime.strptime(ts.replace(",", "."), fmt)
            except ValueError:
                continue
            if "%Y" not in fmt and "%y" not in fmt:
                dt = dt.replace(year=2000)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
        return None


def _f(name: str, header: str, *time_formats: str) -> LogFormat:
    return LogFormat(name, re.compile(header), time_formats)


# Most specific first: on a tie in matched lines, the earlier format wins.
FORMATS = [
    _f("bgl", r"^(?:-|\w+) (?P<ts>\d{10}) \d{4}\.\d\d\.\d\d \S+ \d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+ \S+ \w+ \w+ \w+ (?P<msg>.*)$",
       "epoch"),
    _f("thunderbird", rf"^(?:-|\w+) (?P<ts>\d{{10}}) \d{{4}}\.\d\d\.\d\d \S+ {MONTH} [ \d]\d \d\d:\d\d:\d\d \S+ (?:[^:\[\s]+(?:\[\d+\])?: )?(?P<msg>.*)$",
       "epoch"),
    _f("hpc", r"^\d+ \S+ \S+ \S+ (?P<ts>\d{10}) -?\d+ (?P<msg>.*)$", "epoch"),
    _f("openstack", rf"^\S+\.log\S* (?P<ts>{ISO}) \d+ {LEVEL} \S+ (?:\[[^\]]*\] )?(?P<msg>.*)$",
       "%Y-%m-%d %H:%M:%S.%f"),
    _f("zookeeper", rf"^(?P<ts>{ISO}) - {LEVEL}\s+\[[^\]]*(?:\][^\]]*)*?@\d+\] - (?P<msg>.*)$", "%Y-%m-%d %H:%M:%S.%f"),
    _f("log4j", rf"^(?P<ts>{ISO}) {LEVEL}\s+\[[^\]]*\] \S+?: (?P<msg>.*)$", "%Y-%m-%d %H:%M:%S.%f"),
    _f("windows_cbs", r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d), \w+\s+\w+\s+(?P<msg>.*)$", "%Y-%m-%d %H:%M:%S"),
    _f("python", rf"^(?P<ts>{ISO}) - \S+ - {LEVEL} - (?P<msg>.*)$", "%Y-%m-%d %H:%M:%S.%f"),
    _f("iso_level", rf"^\[?(?P<ts>{ISO})\]?\s+\[?{LEVEL}\]?\s+(?:\[[^\]]*\]\s+)?(?:[\w.$-]+(?:\[\d+\])?:\s+)?(?P<msg>.*)$",
       "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S",
       "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"),
    _f("hdfs", r"^(?P<ts>\d{6} \d{6}) \d+ \w+ [^\s:]+: (?P<msg>.*)$", "%y%m%d %H%M%S"),
    _f("spark", rf"^(?P<ts>\d\d/\d\d/\d\d \d\d:\d\d:\d\d) {LEVEL} [^\s:]+: (?P<msg>.*)$", "%y/%m/%d %H:%M:%S"),
    _f("android", r"^(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s+\d+\s+\d+ [VDIWEFA] (?:[^:]*?)\s*: (?P<msg>.*)$",
       "%m-%d %H:%M:%S.%f"),
    _f("healthapp", r"^(?P<ts>\d{8}-\d\d?:\d\d?:\d\d?:\d+)\|[^|]*\|\d+\|(?P<msg>.*)$", "%Y%m%d-%H:%M:%S:%f"),
    _f("apache_error", rf"^\[(?P<ts>{DAY} {MONTH} \d\d \d\d:\d\d:\d\d(?:\.\d+)? \d{{4}})\] \[[\w:]+\] (?:\[pid [^\]]*\] )?(?P<msg>.*)$",
       "%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S.%f %Y"),
    _f("access_log", r'^\S+ \S+ \S+ \[(?P<ts>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] (?P<msg>".*)$',
       "%d/%b/%Y:%H:%M:%S %z"),
    _f("nginx_error", r"^(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[\w+\] \d+#\d+: (?:\*\d+ )?(?P<msg>.*)$",
       "%Y/%m/%d %H:%M:%S"),
    _f("proxifier", r"^\[(?P<ts>\d\d\.\d\d \d\d:\d\d:\d\d)\] \S+(?: \*\d+)? - (?P<msg>.*)$", "%m.%d %H:%M:%S"),
    _f("syslog_rfc5424", rf"^<\d+>\d (?P<ts>{ISO}|-) \S+ \S+ \S+ \S+ (?:-|(?:\[[^\]]*\])+) ?(?P<msg>.*)$",
       "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"),
    _f("syslog", rf"^(?:<\d+>)?(?P<ts>{MONTH} [ \d]\d \d\d:\d\d:\d\d) \S+\s+(?:(?:--\s+)?[^:\[\s]+(?: [\d.]+)?(?:\[\d+\])?: )?(?P<msg>.*)$",
       "%b %d %H:%M:%S"),
    _f("syslog_iso", rf"^(?P<ts>{ISO}) \S+ [^:\[\s]+(?:\[\d+\])?: (?P<msg>.*)$",
       "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"),
    _f("glog", r"^[IWEF](?P<ts>\d{4} \d\d:\d\d:\d\d\.\d+)\s+\d+ [^\]]+\] (?P<msg>.*)$", "%m%d %H:%M:%S.%f"),
    _f("dmesg", r"^\[\s*(?P<ts>\d+\.\d+)\] (?P<msg>.*)$", "epoch"),
    _f("iso", rf"^\[?(?P<ts>{ISO})\]?:?\s+(?P<msg>.*)$",
       "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S",
       "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"),
]
JSON_FORMAT = LogFormat("json", re.compile(r"^\s*\{.*\}\s*$"))
UNKNOWN = LogFormat("unknown", re.compile(r"^(?P<msg>\S.*)$"))
BY_NAME = {f.name: f for f in FORMATS + [JSON_FORMAT, UNKNOWN]}
JSON_TIME = ("time", "timestamp", "ts", "@timestamp", "date", "asctime", "t")
JSON_MSG = ("msg", "message", "MESSAGE", "log", "event", "text")
MIN_SHARE = 0.6


def detect(lines: list[str]) -> LogFormat:
    """The format whose header matches most of `lines` (at least 60% of the non-blank ones),
    else `unknown`: then a record is a line that does not start with white space."""
    sample = [line for line in lines if line.strip()][:500]
    if not sample:
        return UNKNOWN
    best, best_share = UNKNOWN, 0.0
    for fmt in [JSON_FORMAT] + FORMATS:
        share = sum(bool(fmt.header.match(line)) for line in sample) / len(sample)
        if share > best_share + 1e-9:
            best, best_share = fmt, share
    return best if best_share >= MIN_SHARE else UNKNOWN


def split_header(fmt: LogFormat, line: str) -> tuple[str | None, str] | None:
    """(timestamp text, message) if `line` starts a record in `fmt`, else None."""
    if fmt is JSON_FORMAT:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        ts = next((str(obj[k]) for k in JSON_TIME if k in obj), None)
        msg = next((str(obj[k]) for k in JSON_MSG if k in obj), None)
        return ts, msg if msg is not None else line.strip()
    match = fmt.header.match(line)
    if match is None:
        return None
    groups = match.groupdict()
    return groups.get("ts"), groups["msg"].strip()


def parse_json_time(ts: str | None) -> float | None:
    if ts is None:
        return None
    try:
        value = float(ts)
        return value / 1000 if value > 1e11 else value  # milliseconds
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def record_time(fmt: LogFormat, ts: str | None) -> float | None:
    return parse_json_time(ts) if fmt is JSON_FORMAT else fmt.parse_time(ts)
