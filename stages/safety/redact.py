"""Secret and PII redaction for logs, configs and docs.

Each finding is replaced by a typed placeholder (`<SECRET:aws_access_key>`, `<EMAIL>`, `<IPV4>`,
...) and counted per type in a column (`redact.<type>`, plus `redact.total`), so the shards say
what was removed and the manifest sums the counts. Detectors are regular expressions for
formats with a known shape (keys and tokens as their issuers document them, by the families of
gitleaks' default rules and detect-secrets' plugins: cloud providers, payment processors, chat,
CI and VCS tokens, package registries, AI and SaaS APIs, JWTs, PEM and age private keys; see
`token_formats.py`), connection strings, assignments whose key names a secret (`password = ...`
in INI, YAML, JSON, env files, XML, URLs, command lines), and PII (emails, IPv4 and IPv6
addresses, MAC addresses, configured host names).

Secrets that words introduce in prose, log messages and tools' output ("the password for db01
is ...", "using aws secret key ... for upload", "Unseal Key 1: ...") are found by the words and
the value's shape together (`context.py`).

The fallback for a token no rule knows: a key/value assignment whose key names a secret more
loosely (`masterKey`, `signing_key`, `license_key`, `hmac`, `session_salt`, ...) and whose value
looks random (16+ characters, Shannon entropy of at least 3 bits per character), as gitleaks'
generic-api-key rule pairs a keyword with entropy. Entropy alone never fires, so hashes, UUIDs,
digests and base64 under keys that name no secret (`sha256`, `commit`, `integrity`, `request_id`)
stay (detect-secrets' high-entropy plugins flag them). The example keys of vendors' docs
(`AKIAIOSFODNN7EXAMPLE`, `YOUR_API_KEY`, `ghp_xxxx...`) are left as they are.

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

from pipeline.stage import Resources, Result, Stage, set_columns
from stages.safety.context import COMMANDS, INTRODUCED, NOT_SECRET_WORDS, keep_value
from stages.safety.entropy import looks_random
from stages.safety.token_formats import TOKEN_FORMATS
from stages.safety.triggers import Hits, Triggers

SECRET_WORDS = (r"pass(?:word|wd|phrase)?|pgpassword|sshpass|pwd|secret(?:[_\-]?key)?|token|api[_\-]?key|apikey|access[_\-]?key|"
                r"auth[_\-]?key|private[_\-]?key|client[_\-]?secret|credentials?|requirepass|masterauth|"
                r"secret[_\-]?access[_\-]?key|session[_\-]?key|signing[_\-]?key|encryption[_\-]?key")
VALUE = r"""(?:"(?P<v1>[^"\n]+)"|'(?P<v2>[^'\n]+)'|(?P<v3>[^\s"',;<>{}\[\]()]+))"""
NOT_A_SECRET = re.compile(
    r"""^(\$\{?[\w.:\-]+\}?|%\(\w+\)[sd]|%[sd]|%\w+%|files|systemd|compat|sss|ldap|nis|winbind|\{\{.*\}\}|<[^>]*>|\*+|x+|X+|\.+|-+|_+|
    none|null|nil|true|false|yes|no|on|off|empty|required|optional|string|str|int|bool|
    password|passwd|pass|secret|token|command|file|value|prompt|ask|\.\w+|
    \d{1,3}|\w+\(\)|[\w.]+\.(txt|pem|key|crt|json|yaml|yml|conf|cfg)|(/[\w.\-]+)+/?)$""", re.X | re.I)
PLACEHOLDER = re.compile(r"<(SECRET:\w+|EMAIL|IPV4|IPV6|MAC|HOSTNAME)>")
IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
# `version`, `release`, `build`, `ver`, `v`, `upgraded ... to` or `->` at the end of the text before a
# number, matched on that text reversed: one try at its start, not one at each of its characters
VERSION_BEFORE = re.compile(r"(?i)[\s\"'=:>]*(?:noisrev|esaeler|dliub|rev\b|v\b|ot\b.*\bdedargpu|>-)")
EXAMPLE_VALUE = re.compile(r"EXAMPLE|(?i:^your[_\-]|^<.*>$|x{8}|\*{6}|0{12}|(?:^|[_\-])(?:placeholder|redacted|dummy)(?:$|[_\-]))")
# the loose key words of the fallback, and the key parts that say a value is no secret
LOOSE_HINTS = ("key", "auth", "cred", "sig", "salt", "hmac", "cookie", "session", "dsn", "license", "bearer",
               "seed", "private", "passcode")
LOOSE = (rf"(?:{'|'.join(LOOSE_HINTS)})[\w.\-]*[\"']?[ \t]*(?:=|:=|=>|:)[ \t]*[\"']?"
         r"(?P<secret>[a-zA-Z0-9+/=_\-.~]{16,})")
KEY_PART = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
IPV6 = re.compile(r"(?:[0-9A-Fa-f]{1,4}:|:)(?:[0-9A-Fa-f]{0,4}:){1,6}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})")


@dataclass(frozen=True)
class Detector:
    """`pattern` finds a finding; the group `secret` (or the whole match) is what gets replaced."""

    type: str
    pattern: re.Pattern
    placeholder: str
    keep: Callable[[str, str, int], bool] | None = None  # (value, text, start): True for a match that is not one
    hints: tuple[str, ...] = ()  # lower-case strings (triggers) one of which the text must hold (`triggers.py`)
    key_at: str | None = None  # the group holding a secret word whose key must be a whole key (`_whole_key`)
    by_line: bool = True  # a finding sits on one line: scan only the lines that hold a hint
    next_lines: int = 0  # ... or on one of this many lines after it
    on_lower: re.Pattern | None = None  # the same pattern for the lower-cased text (faster without IGNORECASE)


def _secret(t: str, pattern: str, hints: tuple[str, ...], keep=None, key_at: str | None = None,
            by_line: bool = True, lower: bool = False) -> Detector:
    """`lower`: the pattern (`(?i)...`, with no capital in it that matters) also runs without
    IGNORECASE on the lower-cased text, which is faster."""
    flags = re.match(r"\(\?([a-z]*)\)", pattern)
    rest = flags.group(1).replace("i", "") if flags else ""
    on_lower = re.compile((f"(?{rest})" if rest else "") + pattern[flags.end() if flags else 0:]) if lower else None
    return Detector(t, re.compile(pattern), f"<SECRET:{t}>", keep, hints, key_at, by_line, on_lower=on_lower)


def _whole_key(text: str, start: int) -> bool:
    """A secret word at `start` ends a key of its own: `password`, `db_password`, `dbPassword`,
    `spring.datasource.password`; not the tail of a word (`bypass`, `askpass`, `wtoken`)."""
    if start == 0:
        return True
    prev = text[start - 1]
    if prev in "_.-":
        return True
    if prev.isalnum():
        return (prev.islower() or prev.isdigit()) and text[start].isupper()
    return True


def _boundary(text: str, start: int, end: int, before: str, after: str) -> bool:
    """True when the match is glued to a neighbour (a character of `before` / `after` classes)."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in before):
        return True
    return end < len(text) and (text[end].isalnum() or text[end] in after)


def _keep_ipv4(value: str, text: str, start: int) -> bool:
    """Not an address (part of a longer dotted run, an octet over 255 or with a leading zero), one
    that says nothing about anyone (loopback, unspecified, netmasks), or four numbers after
    `version`, `release`, `build` or `upgraded ... to`: a version."""
    end = start + len(value)
    if _boundary(text, start, end, "_.-", "_-") or (text[end:end + 1] == "." and text[end + 1:end + 2].isdigit()):
        return True
    if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in value.split(".")):
        return True
    return value.startswith(("127.", "0.", "255.")) or bool(VERSION_BEFORE.match(text[max(0, start - 40):start][::-1]))


def _keep_ipv6(value: str, text: str, start: int) -> bool:
    """Not an address (`std::string`, `10:22:33`, a MAC) or one that names no one (`::`, `::1`)."""
    colons = value.count(":")
    if "::" not in value and colons != 7 and not (colons == 6 and "." in value):
        return True  # `10:22:33`: too few groups to be an address (the quick no, asked first)
    if value in ("::", "::1") or _boundary(text, start, start + len(value), "_:.", "_:"):
        return True
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return True
    return False


def _assigned_key(text: str, start: int) -> str:
    """The key a value at `start` is assigned to (`db.signingKey` in `db.signingKey: "v"`)."""
    at = start
    while at > 0 and text[at - 1] in " \t\"':=>":
        at -= 1
    end = at
    while at > 0 and (text[at - 1].isalnum() or text[at - 1] in "_.-"):
        at -= 1
    return text[at:end]


def _keep_loose(value: str, text: str, start: int) -> bool:
    """The fallback's test: a random-looking value, under a key no part of which says it is an id,
    a hash or a public value, and not a URL, a path or a public key."""
    if not looks_random(value) or value.startswith(("ssh-", "ecdsa-", "http", "/", "sha")) or "://" in value:
        return True
    parts = {p.lower() for p in KEY_PART.findall(_assigned_key(text, start))}
    return bool(parts & NOT_SECRET_WORDS) or _keep_assignment(value, text, start)


def _keep_assignment(value: str, text: str = "", start: int = 0) -> bool:
    if text[start + len(value):start + len(value) + 1] == "(":  # `password = get_password(...)`: code
        return True
    return bool(NOT_A_SECRET.match(value)) or bool(PLACEHOLDER.search(value)) or len(value) < 3


WORD_HINTS = ("pass", "pwd", "secret", "token", "key", "credential", "masterauth")
DETECTORS: tuple[Detector, ...] = (
    _secret("private_key", r"-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----",
            ("private key",), by_line=False),
    _secret("aws_access_key", r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}(?![A-Z0-9])",
            ("akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "anpa", "anva", "aipa")),
    _secret("aws_secret_key", r"(?i)aws.{0,20}?(?:secret|key).{0,20}?[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+]{40})"
            r"(?![A-Za-z0-9/+=])", ("aws",), lower=True),
    _secret("gcp_api_key", r"(?<![\w\-])AIza[0-9A-Za-z_\-]{35}(?![\w\-])", ("aiza",)),
    _secret("gcp_oauth_token", r"(?<![\w\-])ya29\.[0-9A-Za-z_\-]{20,}", ("ya29.",)),
    _secret("azure_storage_key", r"(?i)AccountKey\s*=\s*(?P<secret>[A-Za-z0-9+/]{86}==)", ("accountkey",)),
    _secret("azure_sas_token", r"(?<=[?&])sig=(?P<secret>[A-Za-z0-9%+/=]{30,})", ("sig=",)),
    _secret("github_token", r"(?<![\w])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})(?![\w])",
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    _secret("slack_token", r"(?<![\w\-])xox[abposre]-[A-Za-z0-9\-]{10,}", ("xox",)),
    _secret("slack_webhook", r"https://hooks\.slack\.com/services/(?P<secret>T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+)",
            ("hooks.slack.com",)),
    _secret("jwt", r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", ("eyj",)),
    _secret("bearer_token", r"(?i)\b(?:bearer|token)\s+(?P<secret>[A-Za-z0-9\-._~+/]{16,}=*)", ("bearer", "token"),
            lower=True),
    _secret("basic_auth", r"(?i)\bauthorization:\s*basic\s+(?P<secret>[A-Za-z0-9+/]{8,}=*)", ("authorization",), lower=True),
    _secret("url_password", r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:(?P<secret>[^\s@/]+)@", ("://",), lower=True),
    *(_secret(t, pattern, hints) for t, pattern, hints in TOKEN_FORMATS),
    # `key = value`: the pattern starts at the secret word (fast); `_whole_key` checks what is before it
    _secret("password", rf"(?i)(?P<word>{SECRET_WORDS})[\"']?[ \t]*(?:=|:=|=>)[ \t]*{VALUE}", WORD_HINTS,
            keep=_keep_assignment, key_at="word", lower=True),
    # `key: value` only where the value ends the line or the field (YAML, JSON), not in prose
    _secret("password", rf"(?im)(?P<word>{SECRET_WORDS})[\"']?[ \t]*:[ \t]*{VALUE}(?=[ \t]*(?:$|[,}}\]])|[ \t]+#)",
            WORD_HINTS, keep=_keep_assignment, key_at="word", lower=True),
    _secret("password", rf"(?im)^[ \t]*(?:requirepass|masterauth)[ \t]+{VALUE}", ("requirepass", "masterauth"),
            keep=_keep_assignment, lower=True),
    _secret("password", rf"(?i)<(?P<tag>[\w.\-]*(?:{SECRET_WORDS}))>(?P<secret>[^<\n]+)</(?P=tag)>", WORD_HINTS,
            keep=_keep_assignment, lower=True),
    _secret("password", r"(?i)(?<![\w\-])--?(?:password|passwd|pass|token|secret|api-key)[= ](?P<secret>[^\s\"']+)",
            ("--pass", "-pass", "-token", "-secret", "-api-key"), keep=_keep_assignment, lower=True),
    Detector("generic_secret", re.compile(rf"(?i){LOOSE}"), "<SECRET:generic_secret>", _keep_loose, LOOSE_HINTS,
             on_lower=re.compile(LOOSE)),  # no whole-key test: `MASTERKEY`, `masterkey` are keys too
    # secrets that words introduce in prose and log lines, and command-line options (`context.py`)
    *(Detector(t, re.compile(pattern, re.I), f"<SECRET:{t}>", keep, hints, next_lines=after,
               on_lower=re.compile(pattern) if lower else None)
      for t, pattern, hints, keep, after, lower in INTRODUCED),
    *(_secret(t, pattern, hints, keep=keep_value) for t, pattern, hints in COMMANDS),
    Detector("email", re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?![\w\-])"),
             "<EMAIL>", hints=("@",)),
    Detector("mac", re.compile(r"[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}"), "<MAC>",
             keep=lambda v, text, start: _boundary(text, start, start + len(v), "_:-", "_:-")),
    Detector("ipv6", IPV6, "<IPV6>", _keep_ipv6, hints=(":",), by_line=False),
    Detector("ipv4", IPV4, "<IPV4>", _keep_ipv4, hints=(".",), by_line=False),
)
SECRET_TYPES = sorted({d.type for d in DETECTORS if d.placeholder.startswith("<SECRET:")})
PII_TYPES = ["email", "ipv4", "ipv6", "mac", "hostname"]
TYPES = SECRET_TYPES + PII_TYPES


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int


def _value_span(match: re.Match, groups: tuple[str, ...]) -> tuple[int, int]:
    """The span of the first of `groups` that matched (the value), else of the whole match."""
    for group in groups:
        if match.group(group) is not None:
            return match.span(group)
    return match.span()


def _value_groups(d: Detector) -> tuple[str, ...]:
    return tuple(g for g in ("secret", "v1", "v2", "v3") if g in d.pattern.groupindex)


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
        self.triggers = Triggers(h for d in self.detectors for h in d.hints)

    def _wanted(self, hits: Hits) -> list[Detector]:
        return [d for d in self.detectors if not d.hints or not hits.present.isdisjoint(d.hints)]

    def _matches(self, d: Detector, text: str, hits: Hits):
        lower = hits.lower
        if not (d.by_line and d.hints) or len(lower) != len(text):  # a case mapping that changed lengths
            yield from d.pattern.finditer(text)  # would put the lines' offsets off
            return
        pattern, target = (d.on_lower, lower) if d.on_lower is not None else (d.pattern, text)
        for start, end in hits.lines(d.hints, d.next_lines):
            yield from pattern.finditer(target, start, end)

    def _skip(self, d: Detector, m: re.Match, text: str, start: int, value: str) -> bool:
        if not value or (d.keep and d.keep(value, text, start)):
            return True
        if d.placeholder.startswith("<SECRET:") and EXAMPLE_VALUE.search(value):
            return True
        return d.key_at is not None and not _whole_key(text, m.start(d.key_at))

    def redact(self, text: str) -> tuple[str, Counter]:
        counts: Counter = Counter()
        hits = self.triggers.scan(text.lower())
        stale = False  # the text changed since `hits`: looked at again when a detector next needs its lines
        for detector in self._wanted(hits):
            if stale and detector.by_line and detector.hints:
                hits, stale = self.triggers.rescan(text.lower()), False
            redacted = self._apply(detector, text, hits, counts)
            if redacted is not text:
                text, stale = redacted, True
        return text, counts

    def _apply(self, d: Detector, text: str, hits: Hits, counts: Counter) -> str:
        out, last, groups = [], 0, _value_groups(d)
        for m in self._matches(d, text, hits):
            start, end = _value_span(m, groups)
            value = text[start:end]
            if start < last or PLACEHOLDER.fullmatch(value) or self._skip(d, m, text, start, value):
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
        hits = self.triggers.scan(text.lower())
        for d in self._wanted(hits):
            groups = _value_groups(d)
            for m in self._matches(d, text, hits):
                start, end = _value_span(m, groups)
                value = text[start:end]
                if self._skip(d, m, text, start, value) or any(s < end and start < e for s, e in taken):
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
    tally_prefix = "redact."
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
        columns = {}
        for name in self.columns():
            t = name.removeprefix("redact.")
            col = [sum(c.values()) for c in per_doc] if t == "total" else [c[t] for c in per_doc]
            totals[name] = sum(col)
            columns[name] = pa.array(col, pa.int32())
        return Result(set_columns(batch, columns), counts={k: v for k, v in totals.items() if v})
