"""A program's options, read from its man page as the `man` source renders it.

Two readings of the rendered page (`stages/ingest/man.py`: groff, 80 columns, no hyphenation):

- the option lists: the tagged paragraphs of OPTIONS, DESCRIPTION and EXPRESSION (a line
  starting with `-`, its description indented below or beside it). A head such as
  `-n, --lines=[+]NUM`, `-f ARCHIVE`, `--color[=WHEN]` or `-name pattern` gives each option and
  whether it takes an argument (required, optional, none);
- every option the page mentions anywhere (`with -l, scale sizes`, an example `tar -xvzf`),
  which makes an option known but says nothing of its argument.

Shell builtins (`cd`, `read`, `set`, ...) have no page of their own: their entries in bash(1)'s
SHELL BUILTIN COMMANDS are read the same way (`read [-ers] [-a aname] ...`). A program that is
also a builtin (`echo`, `kill`, `printf`) knows the options of both.

Pages are found by name in `man1`, `man6` and `man8` (any suffix: `1ssl`) of each root; a symlink
or `.so` stub is followed to the page it names. Each program is read once per process.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

from stages.ingest.decode import Unreadable, read_bytes
from stages.ingest.man import SO_LINE, ManSource, page_name

DEFAULT_ROOT = "/usr/share/man"
COMMAND_SECTIONS = re.compile(r"^man[168][a-z0-9]*$")
MENTION = re.compile(r"(?<![\w\-.\\$=@:])(--?[A-Za-z0-9?@#][\w\-?@#]*)")
# a head's option: the dashes and name; then `=ARG`, `[=ARG]`, ` ARG`, `[ARG]` or nothing
OPTION_FORM = re.compile(r"^(--?[A-Za-z0-9?@#][\w\-?@#.]*?)(\[?=\S*|\[\S*\]|\s+\S.*)?$")
BUILTINS_HEADING = "SHELL BUILTIN COMMANDS"
SYNOPSIS_ARG = re.compile(r"\[\s*(-[A-Za-z])\s+['<]?([a-z][\w\-]*)")  # `[-a aname]`, `[ -e 'command' ]`
SYNOPSIS_FLAGS = re.compile(r"\[\s*-([A-Za-z0-9@]+)\s*\]")  # `[-ers]`, `[ -sTtuUWX ]`
ATTACHED = re.compile(r"^([A-Z])([a-z]{3,})$")  # `[-Olevel]`, `[ -Fpattern ]`: -O with its argument
SECTION_HEADING = re.compile(r"^\S", re.M)
NAME_LINE = re.compile(r"^NAME\n\s+([\w.+\-\[]+)", re.M)
MAX_HEAD_WORDS = 4  # `-exec command {} +`; more is a sentence
PLACEHOLDER = re.compile(r"^(--?[a-z][a-z\-]*[a-z])([A-Z]{1,3})$")  # `-newerXY`
NUMERIC = re.compile(r"^-(NUM|NUMBER|N|COUNT|COLUMN|LINES|K|[0-9]*NUM)$")  # `-NUM`: `head -20`
EXPRESSIONS = {"expr", "expression"}  # find's `-not expr`: the words after it are checked, not taken
NONE, REQUIRED, OPTIONAL = "none", "required", "optional"


@dataclass
class ProgramOptions:
    """What a program's page says of its options; `arity` maps each listed option to NONE,
    REQUIRED or OPTIONAL (an argument); `mentioned` is every option named anywhere."""

    program: str
    pages: tuple[str, ...]
    arity: dict[str, str] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)

    def knows(self, option: str) -> bool:
        return option in self.arity or option in self.mentioned or any(p.match(option) for p in self.patterns)

    @functools.cached_property
    def patterns(self) -> list[re.Pattern]:
        """Options written with a placeholder: `-newerXY` (any two letters), `-NUM` (a number)."""
        out = []
        for option in (*self.arity, *self.mentioned):
            m = PLACEHOLDER.match(option)
            if m:
                out.append(re.compile(rf"^{re.escape(m.group(1))}[A-Za-z]{{{len(m.group(2))}}}$"))
            elif NUMERIC.match(option):
                out.append(re.compile(r"^-\d+$"))
        return out

    @functools.cached_property
    def single_dash_words(self) -> bool:
        """Whether the program's options are words after one dash (find's `-name`), not letters."""
        return sum(len(o) > 3 and o[1] != "-" for o in self.arity) >= 3

    @property
    def numeric(self) -> bool:
        """Whether a number is an option (`pr -4`, `head -20`: the page lists `-NUM`)."""
        return any(NUMERIC.match(o) for o in (*self.arity, *self.mentioned))

    def long_option(self, name: str) -> str | None:
        """`--name`, or the one known long option it abbreviates (getopt_long takes any
        unambiguous prefix); None when it is no option of the program."""
        if self.knows(name):
            return name
        if not name.startswith("--") or len(name) < 4:
            return None
        matches = sorted(o for o in (*self.arity, *self.mentioned) if o.startswith(name))
        return matches[0] if matches else None

    def merged(self, other: "ProgramOptions") -> "ProgramOptions":
        arity = dict(other.arity)
        for option, kind in self.arity.items():
            arity[option] = kind if arity.get(option, NONE) == NONE else arity[option]
        return ProgramOptions(self.program, self.pages + other.pages, arity, self.mentioned | other.mentioned)


def _argument_kind(rest: str | None) -> str:
    if not rest or not rest.strip() or rest.strip() in EXPRESSIONS:
        return NONE
    rest = rest.strip()
    return OPTIONAL if rest.startswith("[") else REQUIRED


def head_options(head: str) -> dict[str, str]:
    """The options of one list head: `-a, --all` -> {-a: none, --all: none}; `-n, --lines=[+]NUM`
    -> both required (the short form takes what the long form takes); `--color[=WHEN]` optional.
    A line of prose that starts with an option (`-depth is given, then ...`) is no head: none."""
    forms = [f.strip() for f in re.split(r",?\s+(?=-)", head) if f.strip()]  # `-a, --all`; gzip's `-d --decompress`
    out: dict[str, str] = {}
    for form in forms:
        m = OPTION_FORM.match(form)
        if not m or form.endswith((".", ",", ":")) or len(form.split()) > MAX_HEAD_WORDS:
            return {}
        out[m.group(1)] = _argument_kind(m.group(2))
    short = [o for o in out if not o.startswith("--")]
    long = [k for o, k in out.items() if o.startswith("--") and k != NONE]
    if len(short) == 1 and long and out[short[0]] == NONE:  # `-n, --lines=NUM`: -n takes what --lines takes
        out[short[0]] = long[0]
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def page_program(text: str) -> str | None:
    """The program a rendered page documents: the first name of its NAME section
    (`gzip, gunzip, zcat - compress or expand files` is gzip's)."""
    match = NAME_LINE.search(text)
    return match.group(1).rstrip(",") if match else None


def list_heads(text: str) -> list[str]:
    """The heads of tagged paragraphs that name an option: a line starting with `-` whose
    description is indented deeper, on the lines below or after the tag on the same line (a tag
    that fits inside the indent shares its line, as `-P     Never follow ...`)."""
    lines = text.split("\n")
    heads = []
    for i, line in enumerate(lines):
        stripped = line.lstrip(" ")
        if not stripped.startswith("-") or len(stripped) < 2 or stripped[1] == " ":
            continue
        indent = _indent(line)
        below = next((lines[j] for j in range(i + 1, min(i + 4, len(lines))) if lines[j].strip()), "")
        deeper = _indent(below) if below.strip() else 0
        whole = stripped.strip()
        if deeper > indent and "  " not in whole and head_options(whole):
            heads.append(whole)
        elif deeper > indent and len(line) > deeper and line[deeper - 1] == " " and line[deeper] != " ":
            heads.append(line[indent:deeper].strip())  # the tag, then its description on the same line
        elif deeper > indent:
            heads.append(whole)
        else:
            tag = re.split(r"\s{2,}", stripped.strip(), maxsplit=1)
            if len(tag) == 2:  # a tag and its description on one line, the next paragraph follows
                heads.append(tag[0])
    return heads


def options_of_text(program: str, text: str, page: str = "") -> ProgramOptions:
    arity: dict[str, str] = synopsis_options(section(text, "SYNOPSIS"))
    for head in list_heads(text):
        for option, kind in head_options(head).items():
            if arity.get(option, NONE) == NONE:
                arity[option] = kind
    mentioned = {m.rstrip("-.") for m in MENTION.findall(text)}
    return ProgramOptions(program, (page,) if page else (), arity, {m for m in mentioned if len(m) > 1})


def builtin_sections(bash_page: str) -> dict[str, str]:
    """Each builtin's entry in bash(1)'s SHELL BUILTIN COMMANDS: its synopsis lines and description."""
    body = section(bash_page, BUILTINS_HEADING)
    entries: dict[str, list[str]] = {}
    current = None
    for line in body.split("\n"):
        if _indent(line) == 7 and re.match(r"^ {7}[a-z:.\[][\w\-]*(\s|$)", line):
            name = line.split()[0]
            current = name
            entries.setdefault(name, [])
        if current is not None:
            entries[current].append(line)
    return {name: "\n".join(lines) for name, lines in entries.items()}


def synopsis_options(synopsis: str) -> dict[str, str]:
    """Options a synopsis lists: `[-ers]` (three flags), `[-a aname]` (one with an argument),
    `[-Olevel]` (one with its argument attached)."""
    out: dict[str, str] = {}
    for option, _ in SYNOPSIS_ARG.findall(synopsis):
        out[option] = REQUIRED
    for letters in SYNOPSIS_FLAGS.findall(synopsis):
        attached = ATTACHED.match(letters)
        if attached:
            out[f"-{attached.group(1)}"] = REQUIRED
            continue
        for c in letters:
            out.setdefault(f"-{c}", NONE)
    return out


def section(text: str, heading: str) -> str:
    """The body of a page's section (`SYNOPSIS`), up to the next heading; "" when it has none."""
    start = re.search(rf"^{re.escape(heading)}\n", text, re.M)
    if start is None:
        return ""
    body = text[start.end() :]
    end = SECTION_HEADING.search(body)
    return body[: end.start()] if end else body


def builtin_options(name: str, entry: str) -> ProgramOptions:
    options = options_of_text(name, entry, f"bash(1) {name}")
    synopsis = "\n".join(line for line in entry.split("\n") if _indent(line) == 7)
    for option, kind in synopsis_options(synopsis).items():
        options.arity[option] = kind if options.arity.get(option, NONE) == NONE else options.arity[option]
    return options


class ManPages:
    """Options of programs from the man pages under `roots` (default /usr/share/man)."""

    def __init__(self, roots: list[str] | None = None):
        self.roots = [os.path.abspath(r) for r in (roots or [DEFAULT_ROOT])]
        self._cache: dict[str, ProgramOptions | None] = {}

    @functools.cached_property
    def index(self) -> dict[str, list[tuple[str, str]]]:
        """Program name -> (root, page path), over the command sections of every root, sorted."""
        found: dict[str, list[tuple[str, str]]] = {}
        for root in self.roots:
            if not os.path.isdir(root):
                continue
            for section in sorted(os.listdir(root)):
                if not COMMAND_SECTIONS.match(section):
                    continue
                folder = os.path.join(root, section)
                for filename in sorted(os.listdir(folder)):
                    found.setdefault(page_name(filename)[0], []).append((root, os.path.join(folder, filename)))
        return found

    def render(self, root: str, path: str) -> str | None:
        """The page as the man source renders it (a symlink or `.so` stub followed)."""
        path = self._target(root, path)
        if path is None:
            return None
        source = ManSource("man", roots=[root])
        for result in source.read([[root, "", path]]):
            for row in result.kept.to_pylist():
                return row["text"]
        return None

    def _target(self, root: str, path: str, depth: int = 0) -> str | None:
        path = os.path.realpath(path)
        if depth > 3 or not os.path.isfile(path):
            return None
        try:
            data, _ = read_bytes(path, 8 << 20)
        except Unreadable:
            return None
        lines = [line for line in data.splitlines() if line.strip() and not line.startswith(b'.\\"')]
        if len(lines) == 1 and SO_LINE.match(lines[0]):
            target = os.path.join(root, SO_LINE.match(lines[0]).group(1).decode(errors="replace"))
            for candidate in (target, target + ".gz", target + ".bz2", target + ".xz"):
                if os.path.isfile(candidate):
                    return self._target(root, candidate, depth + 1)
            return None
        return path

    @functools.cached_property
    def builtins(self) -> dict[str, str]:
        for root, path in self.index.get("bash", []):
            text = self.render(root, path)
            if text:
                return builtin_sections(text)
        return {}

    def options(self, program: str) -> ProgramOptions | None:
        """The program's options, or None when no page here documents it."""
        if program not in self._cache:
            self._cache[program] = self._read(program)
        return self._cache[program]

    def _read(self, program: str) -> ProgramOptions | None:
        found = None
        for root, path in self.index.get(program, []):
            text = self.render(root, path)
            if text:
                found = options_of_text(program, text, path)
                break
        if program in self.builtins:
            builtin = builtin_options(program, self.builtins[program])
            found = builtin if found is None else found.merged(builtin)
        return found


@functools.lru_cache(maxsize=8)
def man_pages(roots: tuple[str, ...] = (DEFAULT_ROOT,)) -> ManPages:
    """One ManPages per set of roots per process (its pages are read once)."""
    return ManPages(list(roots))
