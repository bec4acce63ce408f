"""Configuration file formats: detect one from a file's name and text, and parse it.

JSON, YAML, TOML and XML are parsed with their libraries (json, PyYAML's safe loader, tomllib,
expat); INI with configparser; systemd units (systemd.syntax(7): sections, `Key=value`, repeated
keys, backslash continuations), nginx (directives ending in `;`, blocks in braces, quoted strings),
Apache httpd (directives, `<Section>` ... `</Section>` nested properly), `key = value` files
(postgresql.conf, .properties, .env) and `Keyword value` files (sshd_config) with small parsers
here. A parse returns the top-level keys or sections; a failure says where and why.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from dataclasses import dataclass

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

FORMATS = ("json", "yaml", "toml", "ini", "systemd", "nginx", "apache", "xml", "keyvalue", "directives")
SYSTEMD_EXT = {".service", ".socket", ".timer", ".target", ".mount", ".automount", ".swap", ".path", ".slice",
               ".scope", ".network", ".netdev", ".link", ".nspawn"}
SYSTEMD_SECTIONS = {"Unit", "Service", "Install", "Socket", "Timer", "Mount", "Automount", "Swap", "Path", "Slice",
                    "Scope", "Match", "Link", "Network", "NetDev", "Address", "Route", "DHCP", "DHCPv4", "DHCPv6",
                    "Journal", "Login", "Manager", "Resolve", "Time", "Coredump", "Sleep", "OOM", "Exec",
                    "Files", "Socket", "Peer", "WireGuard", "WireGuardPeer", "Bridge", "Bond", "VLAN", "Home"}
BY_EXT = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".ini": "ini", ".xml": "xml",
          ".plist": "xml", ".properties": "keyvalue", ".env": "keyvalue", **{e: "systemd" for e in SYSTEMD_EXT}}
BY_NAME = {"sshd_config": "directives", "ssh_config": "directives", "nginx.conf": "nginx", "httpd.conf": "apache",
           "apache2.conf": "apache", "postgresql.conf": "keyvalue", "my.cnf": "ini", "setup.cfg": "ini",
           "tox.ini": "ini", "pyproject.toml": "toml", "cargo.toml": "toml", "docker-compose.yml": "yaml"}
BY_DIR = (("/nginx/", "nginx"), ("/apache2/", "apache"), ("/httpd/", "apache"), ("/systemd/", "systemd"),
          ("/ssh/", "directives"))
MAX_PARSE_BYTES = 4 << 20
TELLTALE = {"json", "xml", "systemd", "nginx", "apache"}  # their look alone says what a file should be

SECTION = re.compile(r"^\s*\[([^\]\n]+)\]\s*$", re.M)
YAML_LINE = re.compile(r"^\s*(?:- |[\w.\-\"']+:(?:\s|$))")
KEYVALUE_LINE = re.compile(r"^\s*[\w.\-/]+\s*[=:]")
DIRECTIVE_LINE = re.compile(r"^\s*[A-Za-z][\w-]*\s+\S")
APACHE_SECTION = re.compile(r"^\s*<(/?)([A-Za-z]\w*)(\s[^>]*)?>\s*$")


class ConfigError(Exception):
    """The text is not valid in the format; the message says where."""


@dataclass
class Parsed:
    format: str
    ok: bool
    keys: list[str]
    error: str | None = None


def _comment_free(text: str, markers: tuple[str, ...] = ("#", ";")) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith(markers)]


def parse_json(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"line {exc.lineno}: {exc.msg}") from None
    return list(value) if isinstance(value, dict) else []


def parse_yaml(text: str) -> list[str]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = list(yaml.load_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{where}{getattr(exc, 'problem', None) or exc}") from None
    if not any(isinstance(d, (dict, list)) for d in docs):
        raise ConfigError("not a mapping or a list: plain text reads as one YAML string")
    return [str(k) for d in docs if isinstance(d, dict) for k in d]


def parse_toml(text: str) -> list[str]:
    try:
        return list(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(exc)) from None


def parse_ini(text: str) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, allow_no_value=True,
                                       delimiters=("=", ":"), comment_prefixes=("#", ";"))
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ConfigError(str(exc).replace("\n", " ")[:300]) from None
    if not parser.sections():
        raise ConfigError("no [section]")
    return parser.sections()


def parse_systemd(text: str) -> list[str]:
    sections: list[str] = []
    continued = False
    for n, line in _comment_free(text):
        if continued:
            continued = line.rstrip().endswith("\\")
            continue
        match = SECTION.match(line)
        if match:
            sections.append(match.group(1).strip())
        elif "=" in line and re.match(r"^\s*[A-Za-z][\w\-.]*\s*=", line):
            if not sections:
                raise ConfigError(f"line {n}: a setting before any [Section]")
            continued = line.rstrip().endswith("\\")
        else:
            raise ConfigError(f"line {n}: neither [Section] nor Key=value: {line.strip()[:80]!r}")
    if not sections:
        raise ConfigError("no [Section]")
    return list(dict.fromkeys(sections))


def _nginx_tokens(text: str):
    """Words, quoted strings, `{`, `}` and `;`, with their line numbers; comments dropped."""
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c, line
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ConfigError(f"line {line}: unterminated string")
            line += text.count("\n", i, j)
            yield text[i:j + 1], line
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                if text[j] in "\"'":  # a quoted part inside a word
                    k = text.find(text[j], j + 1)
                    j = k + 1 if k > 0 else n
                else:
                    j += 1
            yield text[i:j], line
            i = j


def parse_nginx(text: str) -> list[str]:
    depth, words, keys = 0, [], []
    line = 1
    for token, line in _nginx_tokens(text):
        if token == ";":
            if not words:
                raise ConfigError(f"line {line}: an empty directive")
            if depth == 0:
                keys.append(words[0])
            words = []
        elif token == "{":
            if not words:
                raise ConfigError(f"line {line}: a block without a name")
            if depth == 0:
                keys.append(words[0])
            depth, words = depth + 1, []
        elif token == "}":
            if words:
                raise ConfigError(f"line {line}: {' '.join(words)[:60]!r} is missing its ';'")
            depth -= 1
            if depth < 0:
                raise ConfigError(f"line {line}: a '}}' with no block open")
        else:
            words.append(token)
    if words:
        raise ConfigError(f"line {line}: {' '.join(words)[:60]!r} is missing its ';'")
    if depth:
        raise ConfigError(f"end of file inside {depth} open block(s)")
    return list(dict.fromkeys(keys))


def parse_apache(text: str) -> list[str]:
    stack: list[tuple[str, int]] = []
    keys: list[str] = []
    continued = False
    for n, line in _comment_free(text, ("#",)):
        if continued:
            continued = line.rstrip().endswith("\\")
            continue
        match = APACHE_SECTION.match(line)
        if match:
            closing, name = match.group(1), match.group(2).lower()
            if not closing:
                stack.append((name, n))
                if len(stack) == 1:
                    keys.append(match.group(2))
            elif not stack or stack[-1][0] != name:
                raise ConfigError(f"line {n}: </{match.group(2)}> closes "
                                  f"{'<' + stack[-1][0] + '> of line ' + str(stack[-1][1]) if stack else 'nothing'}")
            else:
                stack.pop()
        elif line.lstrip().startswith("<"):
            raise ConfigError(f"line {n}: a malformed section tag: {line.strip()[:80]!r}")
        elif re.match(r"^\s*[A-Za-z][\w:.-]*(\s|$)", line):
            if not stack:
                keys.append(line.split()[0])
            continued = line.rstrip().endswith("\\")
        else:
            raise ConfigError(f"line {n}: not a directive: {line.strip()[:80]!r}")
    if stack:
        raise ConfigError(f"<{stack[-1][0]}> of line {stack[-1][1]} is never closed")
    return list(dict.fromkeys(keys))


def parse_xml(text: str) -> list[str]:
    import xml.etree.ElementTree as ET

    if re.search(r"<!ENTITY", text[:65536]):
        raise ConfigError("declares entities: not expanded, for safety")
    try:
        root = ET.fromstring(text.encode("utf-8") if text.lstrip().startswith("<?xml") else text)
    except ET.ParseError as exc:
        raise ConfigError(str(exc)) from None
    return list(dict.fromkeys(child.tag for child in root)) or [root.tag]


def parse_keyvalue(text: str) -> list[str]:
    keys, continued = [], False
    for n, line in _comment_free(text, ("#", ";", "!")):
        if continued:
            continued = line.rstrip().endswith("\\")
            continue
        match = re.match(r"^\s*(?:export\s+)?([\w.\-/]+)\s*[=:]", line)
        if not match:
            raise ConfigError(f"line {n}: not key = value: {line.strip()[:80]!r}")
        keys.append(match.group(1))
        continued = line.rstrip().endswith("\\")
    if not keys:
        raise ConfigError("no settings")
    return list(dict.fromkeys(keys))


def parse_directives(text: str) -> list[str]:
    keys = []
    for n, line in _comment_free(text, ("#",)):
        match = re.match(r"^\s*([A-Za-z][\w-]*)(?:\s+|\s*=\s*)\S", line)
        if not match:
            raise ConfigError(f"line {n}: not `Keyword value`: {line.strip()[:80]!r}")
        keys.append(match.group(1))
    if not keys:
        raise ConfigError("no settings")
    return list(dict.fromkeys(keys))


PARSERS = {"json": parse_json, "yaml": parse_yaml, "toml": parse_toml, "ini": parse_ini, "systemd": parse_systemd,
           "nginx": parse_nginx, "apache": parse_apache, "xml": parse_xml, "keyvalue": parse_keyvalue,
           "directives": parse_directives}


def format_by_name(path: str) -> str | None:
    name = os.path.basename(path).lower()
    if name in BY_NAME:
        return BY_NAME[name]
    ext = os.path.splitext(name)[1]
    if ext in BY_EXT:
        return BY_EXT[ext]
    if ext in (".conf", ".cfg", ".cnf", ""):
        for part, fmt in BY_DIR:
            if part in path:
                return fmt
    return None


def candidates_by_content(text: str) -> list[str]:
    """Formats to try, most likely first, from how the text looks."""
    body = [line for _, line in _comment_free(text)][:200]
    if not body:
        return []
    first = body[0].lstrip()
    out = []
    if first.startswith(("{", "[")) and not SECTION.match(body[0]):
        out.append("json")
    if first.startswith("<?xml") or (first.startswith("<") and not APACHE_SECTION.match(body[0])):
        out.append("xml")
    sections = set(SECTION.findall(text))
    if sections and sections <= SYSTEMD_SECTIONS:
        out.append("systemd")
    if any(line.rstrip().endswith("{") for line in body) and any(line.rstrip().endswith(";") for line in body):
        out.append("nginx")
    if any(APACHE_SECTION.match(line) for line in body):
        out.append("apache")
    if sections:
        out += ["toml", "ini"]
    share = lambda pattern: sum(bool(pattern.match(line)) for line in body) / len(body)  # noqa: E731
    if share(YAML_LINE) >= 0.6:
        out.append("yaml")
    if share(KEYVALUE_LINE) >= 0.6:
        out += ["keyvalue", "toml"]
    if share(DIRECTIVE_LINE) >= 0.6:
        out.append("directives")
    return list(dict.fromkeys(out))


def parse_config(path: str, text: str) -> Parsed | None:
    """The format and what parsing it gave; None when the text looks like no known format.
    A format the file's name implies is held to; one guessed from the text is the first
    candidate that parses, or, if none does and the text has the telltale look of one (braces
    for JSON, tags for XML, ...), that one with its error."""
    if len(text) > MAX_PARSE_BYTES:
        guess = format_by_name(path) or (candidates_by_content(text[:65536]) or [None])[0]
        return Parsed(guess, False, [], f"over {MAX_PARSE_BYTES} bytes: not parsed") if guess else None
    named = format_by_name(path)
    candidates = [named] if named else candidates_by_content(text)
    first_error = None
    for fmt in candidates:
        try:
            return Parsed(fmt, True, [str(k) for k in PARSERS[fmt](text)][:50])
        except ConfigError as exc:
            first_error = first_error or (fmt, str(exc))
        except RecursionError:
            first_error = first_error or (fmt, "nested too deeply")
    if first_error and (named or first_error[0] in TELLTALE):
        return Parsed(first_error[0], False, [], first_error[1][:500])
    return None  # only loose resemblances, none of which parsed: a format this module does not know
