"""The setting names a configuration file holds, as its format's parser reads it; and the check
that an annotation names only those.

The format is the one `stages/ingest/config_formats.py` decides (by name, else by the text's look,
and only where the file parses in it). Names are read at every depth: JSON, YAML and TOML keys of
nested tables, INI and systemd sections and their keys, nginx and Apache directives inside blocks,
XML tags and attributes, `key = value` and `Keyword value` lines. A file in no format the module
knows, or one that does not parse, gives the first word of each line that is not a comment: what
a reader would call its settings.
"""

from __future__ import annotations

import configparser
import json
import re

from stages.ingest.config_formats import parse_config, tomllib

COMMENT = ("#", ";", "//", "!")
LINE_KEY = re.compile(r"^\s*(?:export\s+)?<?/?([A-Za-z_][\w.\-/:]*)")
SECTION = re.compile(r"^\s*\[([^\]\n]+)\]\s*$")
BRACES = re.compile(r"[{};]")


def _walk(value, out: set[str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            out.add(str(key))
            _walk(inner, out)
    elif isinstance(value, list):
        for inner in value:
            _walk(inner, out)


def _structured(fmt: str, text: str) -> set[str]:
    out: set[str] = set()
    if fmt == "json":
        _walk(json.loads(text), out)
    elif fmt == "yaml":
        import yaml

        for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            _walk(doc, out)
    elif fmt == "toml":
        _walk(tomllib.loads(text), out)
    elif fmt == "ini":
        parser = configparser.ConfigParser(strict=False, interpolation=None, allow_no_value=True,
                                           delimiters=("=", ":"), comment_prefixes=("#", ";"))
        parser.optionxform = str  # keep the names' case
        parser.read_string(text)
        for name in parser.sections():
            out.add(name)
            out.update(parser[name].keys())
    elif fmt == "xml":
        import xml.etree.ElementTree as ET

        root = ET.fromstring(text.encode("utf-8") if text.lstrip().startswith("<?xml") else text)
        for element in root.iter():
            out.add(str(element.tag))
            out.update(element.attrib)
    return out


def _line_keys(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(COMMENT):
            continue
        section = SECTION.match(line)
        if section:
            out.add(section.group(1).strip())
            continue
        for part in BRACES.split(stripped):  # nginx: `server { listen 80; root /srv; }` on one line
            match = LINE_KEY.match(part)
            if match:
                out.add(match.group(1).rstrip(":"))
    return out


def first_setting(text: str) -> str | None:
    """The first setting a reader meets in the text: the name on its first line that is not a comment."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(COMMENT + ("<?", "<!")):  # not XML's declaration or doctype
            section = SECTION.match(line)
            match = LINE_KEY.match(BRACES.split(stripped)[0])
            return section.group(1).strip() if section else match.group(1).rstrip(":") if match else None
    return None


def setting_names(path: str, text: str) -> tuple[str, set[str]]:
    """(the format the names were read in, or "lines"; the names)."""
    parsed = parse_config(path, text)
    if parsed is not None and parsed.ok and parsed.format in ("json", "yaml", "toml", "ini", "xml"):
        return parsed.format, _structured(parsed.format, text)  # the parser that just accepted it
    return (parsed.format if parsed is not None and parsed.ok else "lines"), _line_keys(text)


def unknown_setting(names: list[str], path: str, parent: str) -> str | None:
    """The first of `names` (an annotation's settings) that the parent file does not hold, as
    `unknown_key:NAME`; None when every one is there. Names compare without case where the format
    ignores it (INI keys, sshd_config keywords)."""
    fmt, held = setting_names(path, parent)
    folded = {h.lower() for h in held}
    for name in names:
        key = name.strip().strip("`'\"")
        if key in held or (fmt in ("ini", "directives", "lines") and key.lower() in folded):
            continue
        return f"unknown_key:{key}"
    return None
