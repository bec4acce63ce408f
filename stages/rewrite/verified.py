"""A synthetic answer's items checked against ground truth on the machine (`stages/verify/`).

The template's `check.verify` names the check:

- `commands` (NL -> command pairs): each command as `sigma check-commands` checks it, the parent
  page standing for its own program, which must be the program the command runs
  (`other_program:NAME`); a synopsis placeholder (`[OPTION]`, `<file>`, `FILE...`) is no command
  (`placeholder:[OPTION]`);
- `man_answers` (questions about a page): the options and commands an answer names must be the
  parent page's;
- `settings` (a config annotated): each setting named must be one the parent file's parser finds;
- `log_values` (a log explained): the fields and values the explanation names must be in the
  excerpt it explains.

Each item gets None (verified) or the problem (`unknown_option:ls:-Z`, `unknown_key:Foo`,
`unknown_value:10.0.0.9`, ...). A man page's program is read from the parent's uri
(`file:///usr/share/man/man1/ls.1.gz` is `ls`), else from its NAME line; a page of a subcommand
(`openssl-pkeyparam`, `git-log`) is run as `openssl pkeyparam`, `git log`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from stages.ingest.man import page_name
from stages.verify.commands import OK, CommandChecker, command_program
from stages.verify.config_keys import unknown_setting
from stages.verify.log_values import unknown_mention
from stages.verify.man_answers import unknown_in_answer
from stages.verify.man_options import options_of_text, page_program

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_-]*\]|<[a-z][a-z_ -]*>|\b[A-Z]{2,}\.\.\.|\.\.\.")  # [OPTION], <file>, FILE...


def parent_program(parent: str, parent_uri: str | None) -> str:
    """The program a parent man page documents: its file's name, else its NAME line."""
    if parent_uri and "/man" in parent_uri:
        return page_name(PurePosixPath(parent_uri).name)[0]
    return page_program(parent) or ""


def uri_path(parent_uri: str | None) -> str:
    return parent_uri.removeprefix("file://") if parent_uri else ""


class Verifier:
    """Checks items against the man pages under `man_roots` (default /usr/share/man) and the parent."""

    def __init__(self, man_roots: list[str] | None = None):
        self.checker = CommandChecker(man_roots)

    def problems(self, kind: str, items: list[tuple[str, str]], excerpt: str, parent: str,
                 parent_uri: str | None) -> list[str | None]:
        if kind == "log_values":
            return [unknown_mention(f"{a} {b}".strip(), excerpt) for a, b in items]
        if kind == "settings":
            return [unknown_setting([key], uri_path(parent_uri), parent) for key, _ in items]
        program = parent_program(parent, parent_uri)
        options = options_of_text(program, parent, uri_path(parent_uri))
        if kind == "man_answers":
            return [unknown_in_answer(answer, program, options, self.checker) for _, answer in items]
        own = CommandChecker(pages=self.checker.pages, own={program: options})
        return [self._command(own, program, command) for _, command in items]

    @staticmethod
    def _command(checker: CommandChecker, program: str, command: str) -> str | None:
        placeholder = PLACEHOLDER.search(command)
        if placeholder:
            return f"placeholder:{placeholder.group(0)}"
        runs = command_program(command)
        if program and runs and runs != program and not program.startswith(f"{runs}-"):  # openssl-pkeyparam: openssl pkeyparam
            return f"other_program:{runs}"
        verdict = checker.check(command)
        return None if verdict == OK else verdict
