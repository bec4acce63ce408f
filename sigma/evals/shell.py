"""Shell commands as words: the program a command runs, and its tokens."""

from __future__ import annotations

import re
import shlex

WRAPPERS = ("sudo", "env", "time", "nohup", "exec", "command")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def shell_tokens(command: str) -> list[str]:
    """Tokens as the shell splits them (quotes kept together); whitespace split where quoting is broken."""
    try:
        return shlex.split(command, posix=True)
    except ValueError:
        return command.split()


def command_name(command: str) -> str:
    """The program a command line runs first: past `sudo`, `env`, a `$ ` prompt and variable
    assignments, without its directory (`/usr/bin/find` is `find`)."""
    words = command.strip().strip("`").removeprefix("$ ").split()
    while words and (words[0] in WRAPPERS or ASSIGNMENT.match(words[0])):
        words = words[1:]
    return words[0].rsplit("/", 1)[-1] if words else ""
