"""Does an answer about a program name only options and commands its man page has?

An answer about a page (a man_qa answer) is checked against the page it was written from: each
option it names outside code (`-a`, `--all`) must be one the page names, a cluster (`-la`) one
whose letters all are; each command it shows in backquotes or after a `$ ` prompt is checked as
`sigma check-commands` checks a command, with the page at hand standing for its program. The
first problem is the verdict: `unknown_option:PROG:-x`, `unknown_program:NAME`, `unparsable`.
"""

from __future__ import annotations

import re

from stages.verify.commands import OK, CommandChecker
from stages.verify.man_options import ProgramOptions

CODE = re.compile(r"`([^`\n]+)`|^\s*\$ (.+)$", re.M)
BARE_OPTION = re.compile(r"(?<![\w\-/.=$])(--?[A-Za-z][\w\-]*)")


def _knows(options: ProgramOptions, word: str) -> bool:
    if word.startswith("--"):
        return options.long_option(word.split("=", 1)[0]) is not None
    return options.knows(word) or all(options.knows(f"-{c}") for c in word[1:])


def unknown_in_answer(answer: str, program: str, options: ProgramOptions, checker: CommandChecker) -> str | None:
    """The first option or command of `answer` that the page of `program` (read as `options`) does
    not allow; None when every one is allowed. Code that names no program with a page (a file
    name, a pattern) is not a command and is left alone."""
    own = CommandChecker(pages=checker.pages, own={**checker.own, program: options})
    for match in CODE.finditer(answer):
        code = (match.group(1) or match.group(2)).strip()
        words = code.split()
        if words[0].startswith("-"):
            if not _knows(options, words[0]):
                return f"unknown_option:{program}:{words[0]}"
            continue
        name = words[1] if words[0] == "sudo" and len(words) > 1 else words[0]
        if len(words) > 1 and own.options(name) is not None:
            verdict = own.check(code)
            if verdict != OK:
                return verdict
    for word in BARE_OPTION.findall(CODE.sub(" ", answer)):
        if not _knows(options, word.rstrip("-")):
            return f"unknown_option:{program}:{word}"
    return None
