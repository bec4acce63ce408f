"""Secrets that words introduce in prose, tickets, chat, log messages and tools' output, where no
assignment or issuer's format marks them: "the password for db01 is Tr0ub4dor&3", "using aws
secret key Zk3v... for upload", "Unseal Key 1: qmE4...", "Initial Root Token: hvs...", "try
hunter2hunter2 as the password", and options that carry one (`sshpass -p`, `curl -u user:...`).

The words and the value's shape decide together, as gitleaks' generic rule pairs a keyword with
entropy, but read as a sentence. A secret word (`password`, `passphrase`, `pw`, `credentials`;
`secret`, `token`, `api key`, `<qualifier> key`), then up to ten words on its line that do not
say the value is something else (`for the staging db`, `is generated for root@localhost`; not
`hash`, `id`, `fingerprint`, `file`), then a connector (`:`, `=`, `->`, `is`, `was`, `is now`,
`it's`, `to`, `(`; after a colon the value may stand on one of the next two lines), or, for
some words, the value right after the word or in quotes. `pass`, `passwd` and `pwd` are verbs,
files and commands as often: they take a value after a colon, `=` or `is`, after a participle
(`pass changed to`), or after a word that makes them a noun (`with pass`); else only a strong
password. Password words take a value shaped like a password (six characters or more, a letter,
and a digit, an inner symbol or case that switches often); the others only a random-looking one
(`looks_random`, with a digit or both cases, not words joined by `-` or `_`). A value that names
what it is (a path, a URL, an option, a constant or identifier, a key id or fingerprint, an
algorithm, an encoding, a version, a reference, a mask) is never taken, so digests, commit ids,
UUIDs and fingerprints beside such words stay: a secret word must introduce the value itself.
Checked on `bench/redaction_prose_set.py`'s sets and on the default job's text (docs/benchmarks.md).
"""

from __future__ import annotations

import re

from stages.safety.entropy import looks_random

# key parts and words that say a value is no secret but an id, a digest, a name or a setting
NOT_SECRET_WORDS = frozenset({
    "id", "ids", "hash", "hashes", "checksum", "digest", "sha", "sha1", "sha256", "sha512", "md5", "fingerprint",
    "public", "pub", "authorized", "version", "path", "file", "name", "url", "uri", "type", "size", "len", "length",
    "count", "format", "prefix", "alg", "algorithm", "expiry", "expires", "timeout", "ttl", "store", "dir", "header",
    "field", "column", "pair", "uuid", "endpoint", "etag", "policy", "prompt", "rotation", "scan", "helper",
    "manager", "strength"})
# words before `key` that make it no secret key (or no key at all)
NOT_SECRET_QUALIFIERS = (
    "public", "primary", "foreign", "host", "gpg", "pgp", "ssh", "sort", "hash", "partition", "object", "composite",
    "unique", "index", "registry", "the", "a", "an", "this", "that", "my", "your", "our", "their", "its", "with", "by",
    "of", "for", "to", "from", "and", "or", "new", "old", "same", "one", "each", "every", "any", "no", "which", "what",
    "hot", "dead", "short", "function", "mapping", "dictionary", "dict", "json", "yaml", "config", "table", "lookup",
    "cache", "map", "tab", "enter", "escape", "meta", "control", "ctrl", "alt", "shift", "arrow", "return", "space")
# may stand right before their value with nothing between; `pass` (a verb), `passwd` (a file, a
# command, a C struct) and `pwd` (a command) only before a value shaped like a strong password
BARE_PASSWORD_WORDS = r"passwords?|passphrases?|pw"
OTHER_PASSWORD_WORDS = r"passwds?|passcodes?|pwd|creds|credentials?"
PASSWORD_WORDS = rf"(?:{BARE_PASSWORD_WORDS}|{OTHER_PASSWORD_WORDS})"
WEAK_PASSWORD_WORDS = r"(?-i:pass|Pass)|passwd|pwd"
# `<qualifier> key`: the lookahead finds ` key` after the word before the qualifier is looked up
TOKEN_WORDS = (rf"secrets?|tokens?|api[-_ ]?keys?|apikeys?|"
               rf"(?=[a-z0-9]{{2,}}[-_ ]keys?\b)(?!(?:{'|'.join(NOT_SECRET_QUALIFIERS)})\b)[a-z0-9]{{2,}}[-_ ]keys?")
_CHAR = r"""[^\s"'`<>()\[\]{}]"""
VALUE = rf"{_CHAR}*[^\s\"'`<>()\[\]{{}}.,;:]"
# a value worth judging holds a digit or a symbol, or is long (or, after a connector, has a capital
# past its first letter, where a rule reads the text's case: `pass`): else the pattern looks further
# along the line (`password is generated for root@localhost: ...`) instead of stopping at a word
_PLAUSIBLE_BARE = rf"{_CHAR}*[\d!#$%&*?@^+~/=]|{_CHAR}{{16}}"
PLAUSIBLE = rf"(?={_PLAUSIBLE_BARE}|(?-i:{_CHAR}+[A-Z]))"
# a value in quotes needs six characters to be judged (the quotes say it is a value); else PLAUSIBLE
_OPENED = rf"(?:[\"'`](?={_CHAR}{{6}})|{PLAUSIBLE})"
_GAP_WORD = rf"(?!(?:{'|'.join(sorted(NOT_SECRET_WORDS))})\b)[^\s:=]*[^\s:=.]"
_STRICT_CONNECTOR = (r"[ \t]*:|[ \t]+(?:=|->|=>|→)"
                     r"|[ \t]+(?:is|was|are)(?:[ \t]+(?:now|still|set[ \t]+to|changed[ \t]+to))?\b[ \t]*:?"
                     r"|[?,;]?[ \t]+(?:it's|it is)\b")  # `Admin password? it's ...`
_CONNECTOR = rf"{_STRICT_CONNECTOR}|[ \t]+(?:now|to)\b|[ \t]*\("
_DIRECT = r"[ \t]*(?:=|->|=>|→)|[ \t]+(?=[\"'`])"  # `password = ...`, `token "..."`
# a participle after `pass` makes it a noun: `pass changed to`, `pass accepted (`, `pass set to`
_PARTICIPLE = r"(?:[a-z]+ed|set|reset|sent|given|taken|shown)\b"
# words before `pass`, `passwd` or `pwd` that make it a noun: `with pass ...`, `invalid passwd ...`
NOUN_BEFORE = re.compile(r"(?i)(?<!\w)(?:with|using|via|by|loaded|invalid|wrong|bad|correct|new|old|current|default|"
                         r"temporary|initial|my|your|our|their|the)[ \t]+(?:pass|passwd|pwd)\b[^\n\w]*(?:\w+[^\n\w]*)?$")


def _introduced(bare: str, words: str | None = None) -> str:
    """A secret word, then the value: after words and a connector (the value may stand on one of
    the next two lines after a colon), or in quotes right after the word, or, for `bare` words,
    right after the word (not after a hyphen: `reset-password NAME`). A word is tried once."""
    either = rf"(?<!-)(?P<bare>{bare})|(?<=-)(?:{bare})" + (f"|(?:{words})" if words else "")
    return (rf"(?<!\w)(?:{either})\b"
            rf"(?:(?:{_DIRECT}|(?:[ \t]+{_GAP_WORD}){{0,10}}?(?:{_CONNECTOR}))[ \t]*(?:\n[ \t]*){{0,2}}{_OPENED}"
            rf"|(?(bare)[ \t]+(?={_PLAUSIBLE_BARE})|(?!)))"
            rf"(?P<secret>{VALUE})")


# `pass` only with a colon, `=` or `is`, or after a participle (`pass changed to ...`, `pass
# accepted (...)`; not `pass it to gzip2`), and in lower case or capitalised (`PASS:` is a test's result)
_PASS = (rf"(?-i:[Pp]ass)(?<![\w][Pp]ass)\b(?:{_DIRECT}|(?:[ \t]+{_GAP_WORD}){{0,10}}?(?:{_STRICT_CONNECTOR})"
         rf"|[ \t]+{_PARTICIPLE}(?:{_CONNECTOR}))[ \t]*(?:\n[ \t]*){{0,2}}{_OPENED}(?P<secret>{VALUE})")


# the value first, then what it is: "try X as the password", "X is the login for prod"
_NAMED_AFTER = (rf"""(?<![^\s"'`(]){PLAUSIBLE}(?P<secret>{VALUE})["'`]?[ \t]+(?:in[ \t]+)?"""
                rf"(?:is[ \t]+(?:still[ \t]+)?|as[ \t]+)(?:the|a|my|our|your)[ \t]+(?:[a-z]+[ \t]+)?"
                rf"(?:{PASSWORD_WORDS}|{TOKEN_WORDS}|login|pass)\b")
# values that name what they are, not secrets
TECHNICAL = re.compile(r"(?i)^(?:sha\d*|md5|aes\d*|rsa\d*|ecdsa|ed25519|des3?|hmac[\w\-]*|bcrypt|scrypt|argon2\w*|"
                       r"pbkdf2\w*|x86[-_]64|i[3-6]86|amd64|arm64|aarch64|utf-?(?:8|16|32)|ascii|base64|ssh\d?|http\d?|"
                       r"ipv[46]|tls\d*|ssl\d*|iso-?8859-\d+|latin-?\d|cp\d+|windows-\d+|v?\d+(?:\.\d+)*[a-z]?\d*|"
                       r"(?-i:[A-Z]{3,}\d{1,3}))$")  # the last: SOCKS5, HTTP2
OPTION = re.compile(r"^--?[A-Za-z][\w\-]*(?:=.*)?$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z]{2,}-\d+$")  # IDN2_NO_ALABEL, an issue's IO-304
# snake_case, dotted.names, CamelCase; a bug or standard's number (`Bug#54039`, `CVE-2024-1`, `RFC7613`)
IDENTIFIER = re.compile(r"^(?:_*[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+|(?:[A-Z][a-z]+){2,}=?|(?i:bug|lp|cve|rfc)[#:\-]?\d.*)$")
# a key id or fingerprint: upper-case hex (`A8041FA839E16E36`), colon-separated bytes
KEY_ID = re.compile(r"^(?:keyid:)?(?:(?:0x)?[0-9A-F]{8,}|(?:[0-9A-Fa-f]{2}:){5,}[0-9A-Fa-f]{2})$")
EMAIL_OR_HOST = re.compile(r"^[\w.+\-]+@(?:localhost|[\w\-]+(?:\.[\w\-]+)+)$")
PATH = re.compile(r"^[~.$\w\-]*(?:/[\w.\-@$+*]*)+$")
ENTITY = re.compile(r"&(?:[a-z]+|#\d+);?")  # `&quot`: HTML, not a password
WORDY = re.compile(r"^[a-z]+(?:[\-_.][a-z]+)+$")
SYMBOLS = set("!#$%&*?@^+~")
NOT_A_VALUE = re.compile(r"^(?:\$\{?[\w.:\-]+\}?|%\(\w+\)[sd]|%\w+%|%[sd]|\*+|x+|X+|\.+|-+|_+|(?:env|file|fd):.*)$")


def _never(value: str) -> bool:
    """A value that is no secret whatever the words: a reference, a mask, an option, a pointer, a
    constant or identifier, a key id or fingerprint, a list or assignment, a path, a URL, an
    email, a number or version, an algorithm or encoding, a digest with its algorithm, a public key."""
    return (len(value) < 6 or value[0] == "*" or ";" in value or "=" in value.rstrip("=") or "://" in value
            or bool(ENTITY.search(value))
            or value.startswith(("http", "sha256:", "sha512-", "sha1-", "ssh-", "AAAA"))
            or any(p.match(value) for p in (OPTION, NOT_A_VALUE, TECHNICAL, CONSTANT, IDENTIFIER, KEY_ID,
                                            EMAIL_OR_HOST))
            or _path(value))


def _path(value: str) -> bool:
    """`/etc/app/db.pass`, `~/.pgpass`, `HOME/.kube/config`, `gdb.base/x-c++.exp`; not base64 that
    holds a slash (`/zJ+Iw...`: a part with no separator that looks random)."""
    if "/" not in value or not PATH.match(value):
        return False
    return not any(not re.search(r"[\-_.]", part) and ((len(part) >= 16 and _random(part))
                                                      or (len(part) >= 8 and _mixed(part) and _digit(part)))
                   for part in value.split("/"))


def password_shaped(value: str) -> bool:
    """Six characters or more with a letter, and a digit, a symbol (not only a last one: `expired?`)
    or mixed case that switches often (`BnMOxfwBfOniwF`, not `DisableControllers`)."""
    if _never(value) or not any(c.isalpha() for c in value):
        return False
    if _digit(value) or any(c in SYMBOLS for c in value[:-1]):
        return True
    switches = sum(a.isupper() != b.isupper() for a, b in zip(value, value[1:]) if a.isalpha() and b.isalpha())
    return switches >= 5


def random_shaped(value: str) -> bool:
    """Random-looking (`looks_random`), with a digit or both cases, and not words joined by `-`,
    `_` or `.` (`db-credentials-prod`)."""
    return not _never(value) and _random(value)


def _random(value: str) -> bool:
    return looks_random(value) and not WORDY.match(value) and (_digit(value) or _mixed(value))


def _digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _mixed(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value)


def _code(text: str, start: int, value: str) -> bool:
    return text[start + len(value):start + len(value) + 1] == "("  # `password getpass(...)`: a call


def keep_password(value: str, text: str, start: int) -> bool:
    return _code(text, start, value) or not password_shaped(value)


def keep_weak_password(value: str, text: str, start: int) -> bool:
    """A password after `pass`, `passwd` or `pwd`: as after `password` where a word before makes
    it a noun (`with pass ...`, `the pass to ...`); else only a strong one, with a symbol inside
    it or letters of both cases and a digit (`Pass Velvet8983*`; not `pass v4-mapped`)."""
    if keep_password(value, text, start):
        return True
    if NOUN_BEFORE.search(text, max(0, start - 60), start):
        return False
    return not (any(c in SYMBOLS for c in value[1:-1]) or (_digit(value) and _mixed(value)))


def keep_token(value: str, text: str, start: int) -> bool:
    return _code(text, start, value) or not random_shaped(value)


def keep_value(value: str, text: str, start: int) -> bool:
    """For a value whose words do not say which kind of secret it is: either shape."""
    return _code(text, start, value) or not (password_shaped(value) or random_shaped(value))


# (type, pattern, hints, keep, lines after a hint's line that a value may stand on, whether the
# pattern runs on the lower-cased text: faster than IGNORECASE, where no capital matters)
INTRODUCED = (
    ("password", _introduced(BARE_PASSWORD_WORDS, OTHER_PASSWORD_WORDS), ("passw", "passp", "passc", "pw", "cred"),
     keep_password, 2, True),
    ("password", _PASS, ("pass",), keep_password, 2, False),
    ("password", rf"(?<![\w\-])(?:{WEAK_PASSWORD_WORDS})(?:{_CONNECTOR}|[ \t]+)[ \t]*(?={_PLAUSIBLE_BARE})"
                 rf"(?P<secret>{VALUE})", ("pass", "pwd"), keep_weak_password, 0, False),
    ("generic_secret", _introduced(rf"{TOKEN_WORDS}|credentials?|creds"), ("secret", "token", "key", "cred"),
     keep_token, 2, True),
    ("password", _NAMED_AFTER, tuple(f"{verb} {det}" for verb in ("as", "is", "still")
                                     for det in ("the", "a ", "my", "our", "your")), keep_value, 0, True),
)
# a command line's option that carries a password: `sshpass -p`, `mysql -pSECRET`, `curl -u user:SECRET`,
# `redis-cli -a`, `docker login -p`
COMMANDS = (
    ("password", r"\bsshpass[ \t]+-p[ \t]*(?P<secret>[^\s\"'`]+)", ("sshpass",)),
    ("password", r"\bmysql(?:dump|admin)?\b[^\n]*?[ \t]-p(?P<secret>[^\s\"'`]+)", ("mysql",)),
    ("password", r"\bcurl\b[^\n]*?[ \t](?:-u|--user)[ \t]+[^\s:\"'`]+:(?P<secret>[^\s\"'`]+)", ("curl",)),
    ("password", r"\bredis-cli\b[^\n]*?[ \t]-a[ \t]+(?P<secret>[^\s\"'`]+)", ("redis-cli",)),
    ("password", r"\b(?:docker|podman|buildah|skopeo|helm[ \t]+registry)[ \t]+login\b[^\n]*?[ \t](?:-p|--password)[ \t=]+"
                 r"(?P<secret>[^\s\"'`]+)", (" login",)),
)
