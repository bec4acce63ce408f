"""Secret and PII redaction for logs, configs and docs.

Each finding is replaced by a typed placeholder (`<SECRET:aws_access_key>`, `<EMAIL>`, `<IPV4>`,
...) and counted per type in a column (`redact.<type>`, plus `redact.total`), so the shards say
what was removed and the manifest sums the counts. Detectors are regular expressions for
formats with a known shape (cloud keys and tokens as their issuers document them: AWS access key
ids, Google API keys, GitHub and Slack tokens, JWTs, PEM private keys), assignments whose key
names a secret (`password = ...` in INI, YAML, JSON, env files, XML, URLs, command lines), and
PII (emails, IPv4 and IPv6 addresses, MAC addresses, configured host names). Hashes, UUIDs and
version strings are left alone: no detector fires on entropy alone (detect-secrets' high-entropy
plugins do, which is where its false positives on checksums come from; see bench/redaction.py).

Redaction runs first in a job: the rejects dataset keeps dropped rows with their text, so a
filter that ran before it could write a secret there.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline.stage import Result, Stage, Resources

SECRET_WORDS = (r"pass(?:word|wd|phrase)?|pwd|secret(?:[_\-]?key)?|token|api[_\-]?key|apikey|access[_\-]?key|"
                r"auth[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?|requirepass|masterauth|"
                r"secret[_\-]?access[_\-]?key|session[_\-]?key|signing[_\-]?key|encryption[_\-]?key")
# a key that ends with a secret word: `password`, `DB_PASSWORD`, `spring.datasource.password`, `apiKey`
KEY = rf"""(?P<key>["']?(?:[\w.\-]*?[_.\-]|(?-i:[a-z][a-z0-9]*(?=[A-Z])))?(?:{SECRET_WORDS})["']?)"""
VALUE = r"""(?:"(?P<v1>[^"\n]+)"|'(?P<v2>[^'\n]+)'|(?P<v3>[^\s"',;<>{}\[\]()]+))"""
NOT_A_SECRET = re.compile(
    r"""^(\$\{?[\w.:\-]+\}?|%\(\w+\)[sd]|%[sd]|%\w+%|files|systemd|compat|sss|ldap|nis|winbind|\{\{.*\}\}|<[^>]*>|\*+|x+|X+|\.+|-+|_+|
    none|null|nil|true|false|yes|no|on|off|empty|required|optional|string|str|int|bool|
    password|passwd|pass|secret|token|command|file|value|prompt|ask|\.\w+|
    \d{1,3}|\w+\(\)|[\w.]+\.(txt|pem|key|crt|json|yaml|yml|conf|cfg)|(/[\w.\-]+)+/?)$""", re.X | re.I)
PLACEHOLDER = re.compile(r"<(SECRET:\w+|EMAIL|IPV4|IPV6|MAC|HOSTNAME)>")
IPV4 = re.compile(r"(?<![\w.\-])(?<![Vv]ersion )(?<!VERSION )(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                  r"(?![\w\-]|\.\d)")
VERSION_CONTEXT = re.compile(r"(?i)(version|release|build|\bver|\bv|upgraded\b.*\bto|->)[\s\"'=:>]*$")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?![\w:])")


@dataclass(frozen=True)
class Detector:
    """`pattern` finds a finding; the group `secret` (or the whole match) is what gets replaced."""

    type: str
    pattern: re.Pattern
    placeholder: str
    keep: Callable[[str, str, int], bool] | None = None  # (value, text, start): True for a match that is not one


def _secret(t: str, pattern: str, flags: int = 0, keep=None) -> Detector:
    return Detector(t, re.compile(pattern, flags), f"<SECRET:{t}>", keep)


def _keep_ipv4(value: str, text: str, start: int) -> bool:
    """Loopback, unspecified addresses and netmasks say nothing about anyone; four numbers after
    `version`, `release`, `build` or `upgraded ... to` are a version, not an address."""
    return value.startswith(("127.", "0.", "255.")) or bool(VERSION_CONTEXT.search(text, max(0, start - 40), start))


def _keep_ipv6(value: str, text: str, start: int) -> bool:
    """Not an address (`std::string`, `10:22:33`, a MAC) or one that names no one (`::`, `::1`)."""
    if value in ("::", "::1"):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return True
    return False


def _keep_assignment(value: str, text: str = "", start: int = 0) -> bool:
    if text[start + len(value):start + len(value) + 1] == "(":  # `password = get_password(...)`: code
        return True
    return bool(NOT_A_SECRET.match(value)) or bool(PLACEHOLDER.search(value)) or len(value) < 3


DETECTORS: tuple[Detector, ...] = (
    _secret("private_key", r"-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----"),
    _secret("aws_access_key", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Z0-9])"),
    _secret("aws_secret_key", r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"),
    _secret("gcp_api_key", r"(?<![\w\-])AIza[0-9A-Za-z_\-]{35}(?![\w\-])"),
    _secret("gcp_oauth_token", r"(?<![\w\-])ya29\.[0-9A-Za-z_\-]{20,}"),
    _secret("azure_storage_key", r"(?i)AccountKey\s*=\s*(?P<secret>[A-Za-z0-9+/]{86}==)"),
    _secret("azure_sas_token", r"(?<=[?&])sig=(?P<secret>[A-Za-z0-9%+/=]{30,})"),
    _secret("github_token", r"(?<![\w])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})(?![\w])"),
    _secret("slack_token", r"(?<![\w\-])xox[abposr]-[A-Za-z0-9\-]{10,}"),
    _secret("slack_webhook", r"https://hooks\.slack\.com/services/(?P<secret>T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+)"),
    _secret("jwt", r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    _secret("bearer_token", r"(?i)\b(?:bearer|token)\s+(?P<secret>[A-Za-z0-9\-._~+/]{16,}=*)"),
    _secret("basic_auth", r"(?i)\bauthorization:\s*basic\s+(?P<secret>[A-Za-z0-9+/]{8,}=*)"),
    _secret("url_password", r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@"),
    _secret("password", rf"(?i)(?<![\w\-]){KEY}[ \t]*(?:=|:=|=>)[ \t]*{VALUE}", keep=_keep_assignment),
    # `key: value` only where the value ends the line or the field (YAML, JSON), not in prose
    _secret("password", rf"(?im)(?<![\w\-]){KEY}[ \t]*:[ \t]*{VALUE}(?=[ \t]*(?:$|[,}}\]#]))", keep=_keep_assignment),
    _secret("password", rf"(?im)^\s*(?:requirepass|masterauth)\s+{VALUE}", keep=_keep_assignment),
    _secret("password", rf"(?i)<(?P<tag>[\w.\-]*(?:{SECRET_WORDS}))>(?P<secret>[^<\n]+)</(?P=tag)>", keep=_keep_assignment),
    _secret("password", r"(?i)(?<![\w\-])--?(?:password|passwd|pass|token|secret|api-key)[= ](?P<secret>[^\s\"']+)",
            keep=_keep_assignment),
    Detector("email", re.compile(r"(?<![\w.+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
                                 r"(?![\w\-])"), "<EMAIL>"),
    Detector("mac", re.compile(r"(?<![\w:\-])[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:\-])"),
             "<MAC>"),
    Detector("ipv6", IPV6, "<IPV6>", _keep_ipv6),
    Detector("ipv4", IPV4, "<IPV4>", _keep_ipv4),
)
SECRET_TYPES = sorted({d.type for d in DETECTORS if d.placeholder.startswith("<SECRET:")})
PII_TYPES = ["email", "ipv4", "ipv6", "mac", "hostname"]
TYPES = SECRET_TYPES + PII_TYPES


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int


def _value_span(match: re.Match) -> tuple[int, int]:
    for group in ("secret", "v1", "v2", "v3"):
        if group in match.re.groupindex and match.group(group) is not None:
            return match.span(group)
    return match.span()


class Redactor:
    """Finds and replaces secrets and PII in a text. `types` limits the detectors (default all);
    `hostnames` are regular expressions for host names to redact (e.g. `[\\w\\-]+\\.corp\\.example\\.com`)."""

    def __init__(self, types: Sequence[str] | None = None, hostnames: Sequence[str] | None = None):
        unknown = set(types or ()) - set(TYPES)
        if unknown:
            raise ValueError(f"unknown redaction type(s) {', '.join(sorted(unknown))}; known: {', '.join(TYPES)}")
        self.detectors = [d for d in DETECTORS if types is None or d.type in types]
        if hostnames:
            host = re.compile(r"(?<![\w.\-])(?:" + "|".join(hostnames) + r")(?![\w\-])", re.I)
            self.detectors.append(Detector("hostname", host, "<HOSTNAME>"))
        self.types = sorted({d.type for d in self.detectors})

    def redact(self, text: str) -> tuple[str, Counter]:
        counts: Counter = Counter()
        for detector in self.detectors:
            text = self._apply(detector, text, counts)
        return text, counts

    def _apply(self, d: Detector, text: str, counts: Counter) -> str:
        out, last = [], 0
        for m in d.pattern.finditer(text):
            start, end = _value_span(m)
            value = text[start:end]
            if start < last or not value or PLACEHOLDER.fullmatch(value) or (d.keep and d.keep(value, text, start)):
                continue
            out += [text[last:start], d.placeholder]
            last = end
            counts[d.type] += 1
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)

    def find(self, text: str) -> list[Finding]:
        """What `redact` would replace, as spans of the original text (for evaluation)."""
        findings: list[Finding] = []
        taken: list[tuple[int, int]] = []
        for d in self.detectors:
            for m in d.pattern.finditer(text):
                start, end = _value_span(m)
                value = text[start:end]
                if not value or (d.keep and d.keep(value, text, start)) or any(s < end and start < e for s, e in taken):
                    continue
                findings.append(Finding(d.type, start, end))
                taken.append((start, end))
        return sorted(findings, key=lambda f: f.start)


class Redact(Stage):
    """Replaces secrets and PII with typed placeholders, and adds `redact.<type>` counts and
    `redact.total` per document. It drops nothing; put it first in the stage list, before any
    filter whose rejects would keep a secret. `types`: the detectors to run (default all; see
    `TYPES`); `hostnames`: regular expressions of host names to redact."""

    name = "redact"
    resources = Resources(batch_size=1024)

    def __init__(self, types: list[str] | None = None, hostnames: list[str] | None = None):
        self.redactor = Redactor(types, hostnames)

    def columns(self) -> dict[str, pa.DataType]:
        return {**{f"redact.{t}": pa.int32() for t in self.redactor.types}, "redact.total": pa.int32()}

    def process(self, batch: pa.Table) -> Result:
        texts, per_doc = [], []
        for text in batch["text"].to_pylist():
            if text is None:
                texts.append(None), per_doc.append(Counter())
                continue
            clean, counts = self.redactor.redact(text)
            texts.append(clean), per_doc.append(counts)
        batch = batch.set_column(batch.schema.get_field_index("text"), batch.schema.field("text"),
                                 pa.array(texts, batch.schema.field("text").type))
        totals: Counter = Counter()
        for name in self.columns():
            t = name.removeprefix("redact.")
            col = [sum(c.values()) for c in per_doc] if t == "total" else [c[t] for c in per_doc]
            totals[name] = sum(col)
            if name in batch.column_names:
                batch = batch.drop_columns([name])
            batch = batch.append_column(pa.field(name, pa.int32()), pa.array(col, pa.int32()))
        return Result(batch, counts={k: v for k, v in totals.items() if v})
