"""Is a command line one this machine can run as written? Every program it runs has a man page
here (or is a shell builtin), and every option it gives a program is one that program's page
names (`stages/verify/man_options.py`).

The line is read as the shell reads it (`stages/verify/shell_syntax.py`): each simple command of
its pipelines and lists, and of its `$(...)`, is checked. Options are read as getopt reads them:
clusters (`-la` is `-l -a`), an option that takes an argument ends its cluster (`-n5`, `-k2,2`)
or takes the next word (`-n 5`, `--lines 5`), long options with `=` and their unambiguous
prefixes, `--` ends the options, and GNU programs take options after operands. Commands that run
commands are followed into the command they run: `sudo`, `env`, `xargs`, `nice`, `nohup`,
`timeout`, `watch`, `find -exec ... ;` and `sh -c STRING`; the remote command of `ssh HOST
[options] COMMAND` is not checked: it runs elsewhere. `git ls-files` is checked
against the git-ls-files page where there is one.

The verdict is `ok` or the first problem: `unknown_program:NAME` (no page and no builtin),
`unknown_option:NAME:-Z`, or `unparsable` (an unclosed quote or substitution, or no command).
A program named by a path with no page (`./build.sh`) or by a variable (`$EDITOR`) is taken
as it is: nothing here can tell what it accepts.
"""

from __future__ import annotations

import re

from stages.verify.man_options import NONE, OPTIONAL, REQUIRED, ManPages, ProgramOptions, man_pages
from stages.verify.shell_syntax import ShellSyntaxError, Word, simple_commands

OK = "ok"
UNPARSABLE = "unparsable"
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*(\[[^\]]*\])?\+?=")
NUMBER = re.compile(r"^-\d+([.,:]\d+)*$")  # `head -5`, `seq -1 ...`: a count or a value, where no such option is listed
SIGNAL = re.compile(r"^-(SIG)?(HUP|INT|QUIT|ILL|TRAP|ABRT|IOT|BUS|FPE|KILL|USR1|SEGV|USR2|PIPE|ALRM|TERM|STKFLT|CHLD|"
                    r"CONT|STOP|TSTP|TTIN|TTOU|URG|XCPU|XFSZ|VTALRM|PROF|WINCH|IO|POLL|PWR|SYS|RTMIN|RTMAX)$|^-\d+$")
SIGNALLERS = {"kill", "killall", "pkill"}
CHMOD_MODE = re.compile(r"^-[rwxXstugo,+=-]+$")  # `chmod -x file`: a mode, not an option
OPTION = re.compile(r"^--?[A-Za-z0-9?@#]")  # `-` alone, `-------` and `-(` are words
ELSEWHERE = {"perl": "perlrun"}  # pages whose program's options are listed in another page
# programs that run the rest of their words as a command, after their own options and, for
# some, a fixed number of operands (timeout's duration, chroot's root)
RUNNERS = {"sudo": 0, "env": 0, "xargs": 0, "nice": 0, "nohup": 0, "time": 0, "timeout": 1, "stdbuf": 0,
           "chroot": 1, "ionice": 0, "taskset": 1, "setsid": 0, "exec": 0, "command": 0, "builtin": 0,
           "watch": 0, "flock": 1, "strace": 0, "unbuffer": 0, "caffeinate": 0}
# what sudo's options take, for machines without its page (it is often not installed with one)
SUDO_ARGUMENTS = {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-R", "-T"}
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "su"}  # their -c argument is a command line
SHELL_COMMAND = re.compile(r"^-[a-z]*c$")
REMOTE = {"ssh"}  # the words after the destination run on another machine
EXEC_PRIMARIES = {"-exec", "-execdir", "-ok", "-okdir"}
ORDERED = {"echo", "printf", "awk", "mawk", "gawk", *RUNNERS, *REMOTE}  # options end at the first operand
MAX_DEPTH = 6


class CommandChecker:
    """Checks command lines against the pages under `roots`; pages are read once each."""

    def __init__(self, roots: list[str] | tuple[str, ...] | None = None, pages: ManPages | None = None,
                 own: dict[str, ProgramOptions] | None = None):
        self.pages = pages or man_pages(tuple(roots) if roots else ("/usr/share/man",))
        self.own = own or {}  # programs read from a page at hand (a synthetic row's parent), not the machine's

    def check(self, line: str, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            return OK
        try:
            commands = simple_commands(line)
        except ShellSyntaxError:
            return UNPARSABLE
        if depth == 0 and not any(c.words for c in commands):
            return UNPARSABLE
        for command in commands:
            for inner in command.substitutions:
                verdict = self.check(inner, depth + 1)
                if verdict != OK:
                    return verdict
            verdict = self.check_words(command.words, depth)
            if verdict != OK:
                return verdict
        return OK

    def options(self, name: str) -> ProgramOptions | None:
        if name in self.own:
            return self.own[name]
        found = self.pages.options(name)
        if found is None and name == "[":
            found = self.pages.options("test")
        return found

    def check_words(self, words: list[Word], depth: int) -> str:
        while words and ASSIGNMENT.match(words[0].text):
            words = words[1:]
        if not words:
            return OK
        first = words[0].text
        if not first or "$" in first or "`" in first:
            return OK
        name = first.rsplit("/", 1)[-1] if first != "/" else first
        options = self.options(name)
        if name in ELSEWHERE and options is not None and self.options(ELSEWHERE[name]) is not None:
            options = options.merged(self.options(ELSEWHERE[name]))
        if options is None:
            if "/" in first:  # a script or program of the user's: nothing to check it against
                return OK
            if name != "sudo":
                return f"unknown_program:{name}"
        return self._arguments(name, options, words[1:], depth)

    def _arguments(self, name: str, options: ProgramOptions | None, words: list[Word], depth: int) -> str:
        ordered = name in ORDERED
        i = operands = 0
        while i < len(words):
            word = words[i].text
            if word == "--":
                return self._rest(name, words[i + 1 :], depth)
            if name in RUNNERS and ASSIGNMENT.match(word) and name == "env":
                i += 1
                continue
            if name == "find" and word in EXEC_PRIMARIES:
                end = next((j for j in range(i + 1, len(words)) if words[j].text in (";", "+")), len(words))
                verdict = self.check_words(words[i + 1 : end], depth + 1)
                if verdict != OK:
                    return verdict
                i = end + 1
                continue
            if name in SHELLS and SHELL_COMMAND.match(word) and i + 1 < len(words):  # sh -c 'a | b'
                verdict, _ = self._option(name, options, word, [])
                verdict = verdict if verdict != OK else self.check(words[i + 1].text, depth + 1)
                if verdict != OK:
                    return verdict
                i += 2
                continue
            if OPTION.match(word) and not self._value(name, options, words[i]):
                verdict, taken = self._option(name, options, word, words[i + 1 : i + 2])
                if verdict != OK:
                    return verdict
                i += 1 + taken
                continue
            if name in REMOTE and not operands:  # `ssh HOST -p 22 cmd`: options go on past the destination
                operands, i = 1, i + 1
                continue
            if ordered:
                return self._rest(name, words[i:], depth)
            sub = self.options(f"{name}-{word}") if i == 0 or name not in ORDERED else None
            if sub is not None and options is not None and "-" not in name:  # `git ls-files`: the git-ls-files page
                name, options = f"{name}-{word}", sub
            i += 1
        return OK

    @staticmethod
    def _value(name: str, options: ProgramOptions | None, word: Word) -> bool:
        """A word that starts with `-` but is no option to check: a number where the page lists no
        such option, a signal to kill, a mode to chmod, text with spaces (`echo '-x is ...'`), or
        an expansion (`-$n`) that only the shell resolves."""
        text = word.text
        if "$" in text or "`" in text or any(c.isspace() for c in text):
            return True
        if (name in SIGNALLERS and SIGNAL.match(text)) or (name == "chmod" and CHMOD_MODE.match(text)):
            return True
        return bool(NUMBER.match(text)) and not (options is not None and options.knows(text))

    def _rest(self, name: str, words: list[Word], depth: int) -> str:
        """What follows a program's options, where it is a command to check."""
        if name in RUNNERS and words:
            skip = RUNNERS[name]
            rest = words[skip:]
            if name == "env":
                while rest and ASSIGNMENT.match(rest[0].text):
                    rest = rest[1:]
            if name == "watch" and len(rest) == 1:
                return self.check(rest[0].text, depth + 1)
            return self.check_words(rest, depth + 1)
        return OK

    def _option(self, name: str, options: ProgramOptions | None, word: str, following: list[Word]) -> tuple[str, int]:
        """(verdict, how many of the following words it takes as its argument)."""
        if options is None:  # sudo without its page: only where its command starts matters
            return OK, int(word in SUDO_ARGUMENTS)
        if word.startswith("--"):
            option, _, value = word.partition("=")
            known = options.long_option(option)
            if known is None:
                return f"unknown_option:{name}:{option}", 0
            takes = options.arity.get(known, NONE) == REQUIRED and not value and bool(following)
            return OK, int(takes)
        if options.knows(word):
            return OK, int(options.arity.get(word, NONE) == REQUIRED and bool(following))
        j = 1
        while j < len(word):
            if word[j].isdigit() and options.numeric:  # `pr -4t`: a number, then -t
                while j < len(word) and word[j].isdigit():
                    j += 1
                continue
            option = f"-{word[j]}"
            rest = word[j + 1 :]
            j += 1
            if not options.knows(option):
                return f"unknown_option:{name}:{word if options.single_dash_words else option}", 0
            kind = options.arity.get(option)
            if kind in (REQUIRED, OPTIONAL) or (kind is None and rest and not rest.isalnum()):
                return OK, int(not rest and kind == REQUIRED and bool(following))
        return OK, 0


def command_program(line: str) -> str | None:
    """The program a command line runs first, past assignments and `sudo` (`sudo -u x /bin/ls` is `ls`)."""
    try:
        commands = simple_commands(line)
    except ShellSyntaxError:
        return None
    words = [w.text for w in commands[0].words] if commands else []
    while words and (ASSIGNMENT.match(words[0]) or words[0] == "sudo"):
        words = words[1:]
        while words and words[0].startswith("-"):  # sudo's own options
            words = words[1 + (words[0] in SUDO_ARGUMENTS) :]
    return words[0].rsplit("/", 1)[-1] if words else None


def check_command(line: str, roots: list[str] | tuple[str, ...] | None = None) -> str:
    """`ok`, or why the command line is not one this machine's pages allow (see the module docstring)."""
    return CommandChecker(roots).check(line)
