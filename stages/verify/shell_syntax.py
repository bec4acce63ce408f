"""A shell command line as the shell reads it: words (quotes removed, but remembered), control
operators, redirections, command substitutions; then the simple commands it runs.

Enough of bash's grammar (bash(1), "SHELL GRAMMAR" and "QUOTING") to find every program a one-line
command runs and the words it passes: pipelines, lists (`&&`, `||`, `;`, `&`), subshells and
groups, compound commands (`if`/`while`/`for` ... `done`), variable assignments, redirections
(dropped with their target), `$(...)` and backquotes (their commands are read too), `<(...)`.
Here-document bodies, `case` arms and function definitions are not followed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPERATORS = ("&&", "||", ";;", "|&", "|", ";", "&", "(", ")")  # longest first
REDIRECTIONS = ("&>>", "<<<", "<<-", ">>", "<<", "<&", ">&", "<>", ">|", "&>", "<", ">")
# reserved words that start a command's words (skipped) and those that make the whole simple
# command something other than a program call (a for/case/select header, an ending)
LEADING_KEYWORDS = {"!", "{", "}", "do", "then", "else", "elif", "if", "while", "until", "time", "coproc"}
HEADER_KEYWORDS = {"for", "case", "select", "function", "done", "fi", "esac", "in", "[[", "]]", "}"}


class ShellSyntaxError(ValueError):
    """The line is not a complete shell command (an unclosed quote or substitution)."""


@dataclass(frozen=True)
class Word:
    text: str  # as the program receives it: quotes and escapes removed
    quoted: bool = False  # some of it was quoted or escaped (`\;` is a word, `;` an operator)
    substitutions: tuple[str, ...] = ()  # command lines inside $(...), `...` and <(...)


@dataclass
class SimpleCommand:
    words: list[Word]
    substitutions: list[str] = field(default_factory=list)  # of its words and redirection targets


def _closing(line: str, i: int) -> int:
    """The index just past the `)` that closes the `(` before position i (quotes respected)."""
    depth = 1
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unclosed single quote")
            i = end + 1
            continue
        if c == '"':
            i = _double_quoted(line, i + 1, [], [])
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ShellSyntaxError("unclosed $( or (")


def _backquoted(line: str, i: int) -> tuple[str, int]:
    """The command inside backquotes starting after position i-1, and the index past the closing one."""
    out = []
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] in "$`\\":
            out.append(line[i + 1])
            i += 2
            continue
        if c == "`":
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ShellSyntaxError("unclosed backquote")


def _dollar(line: str, i: int, text: list[str], subs: list[str]) -> int:
    """A `$` expansion at position i: `$((...))` arithmetic, `$(...)` a command, else text."""
    if line.startswith("$((", i):
        end = _closing(line, i + 2)
        text.append(line[i:end])
        return end
    if line.startswith("$(", i):
        end = _closing(line, i + 2)
        subs.append(line[i + 2 : end - 1])
        text.append(line[i:end])
        return end
    if line.startswith("${", i):
        end = line.find("}", i)
        if end < 0:
            raise ShellSyntaxError("unclosed ${")
        text.append(line[i : end + 1])
        return end + 1
    text.append("$")
    return i + 1


def _double_quoted(line: str, i: int, text: list[str], subs: list[str]) -> int:
    """Inside double quotes from position i; returns the index past the closing quote."""
    while i < len(line):
        c = line[i]
        if c == '"':
            return i + 1
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            text.append(nxt if nxt in '$`"\\\n' else c + nxt)
            i += 2
        elif c in "$`":
            i = _expansion(line, i, text, subs)
        else:
            text.append(c)
            i += 1
    raise ShellSyntaxError("unclosed double quote")


def _expansion(line: str, i: int, text: list[str], subs: list[str]) -> int:
    """A `$...` or backquoted expansion at position i (its commands go to `subs`); the index past it."""
    if line[i] == "$":
        return _dollar(line, i, text, subs)
    inner, end = _backquoted(line, i + 1)
    subs.append(inner)
    text.append(f"`{inner}`")
    return end


def tokens(line: str) -> list[Word | str]:
    """Words and operators (a str: `|`, `&&`, `;`, `(`, ... and redirections such as `2>`)."""
    out: list[Word | str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            i += 1
            continue
        if c == "\n":
            out.append(";")
            i += 1
            continue
        if c == "#" and (i == 0 or line[i - 1] in " \t\n;&|("):
            end = line.find("\n", i)
            i = n if end < 0 else end
            continue
        op = next((o for o in OPERATORS if line.startswith(o, i)), None)
        if op is not None:
            out.append(op)
            i += len(op)
            continue
        fd = i
        while fd < n and line[fd].isdigit():
            fd += 1
        redir = next((r for r in REDIRECTIONS if line.startswith(r, fd)), None)
        if redir is not None and (fd == i or redir[0] in "<>"):
            if redir in ("<", ">") and line.startswith("(", fd + 1):  # process substitution <(...)
                end = _closing(line, fd + 2)
                out.append(Word(line[i:end], False, (line[fd + 2 : end - 1],)))
                i = end
                continue
            out.append(line[i : fd + len(redir)])
            i = fd + len(redir)
            continue
        i = _word(line, i, out)
    return out


def _word(line: str, i: int, out: list) -> int:
    text: list[str] = []
    subs: list[str] = []
    quoted = False
    n = len(line)
    while i < n:
        c = line[i]
        if c in " \t\n<>" or any(line.startswith(o, i) for o in OPERATORS):
            break
        if c == "\\":
            quoted = True
            if i + 1 < n and line[i + 1] != "\n":
                text.append(line[i + 1])
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unclosed single quote")
            text.append(line[i + 1 : end])
            quoted, i = True, end + 1
        elif c == '"':
            quoted = True
            i = _double_quoted(line, i + 1, text, subs)
        elif c == "$":
            if line.startswith("$'", i):  # ANSI-C quoting: $'...', where \' is a quote
                end = i + 2
                while end < n and line[end] != "'":
                    end += 2 if line[end] == "\\" else 1
                if end >= n:
                    raise ShellSyntaxError("unclosed $'")
                text.append(line[i + 2 : end])
                quoted, i = True, end + 1
            else:
                i = _expansion(line, i, text, subs)
        elif c == "`":
            i = _expansion(line, i, text, subs)
        else:
            text.append(c)
            i += 1
    out.append(Word("".join(text), quoted, tuple(subs)))
    return i


def simple_commands(line: str) -> list[SimpleCommand]:
    """The simple commands of a command line, in order, with reserved words and redirections
    taken out (a `for` or `case` header, and `[[ ... ]]`, give none)."""
    commands: list[SimpleCommand] = []
    current: list[Word] = []
    subs: list[str] = []
    redirect = False
    for tok in tokens(line) + [";"]:
        if isinstance(tok, Word):
            subs += tok.substitutions
            if redirect:
                redirect = False
            else:
                current.append(tok)
            continue
        if tok not in OPERATORS:  # a redirection: its target word follows
            redirect = True
            continue
        _close(current, subs, commands)
        current, subs, redirect = [], [], False
    return commands


def _close(words: list[Word], subs: list[str], commands: list[SimpleCommand]) -> None:
    while words and not words[0].quoted and words[0].text in LEADING_KEYWORDS:
        words = words[1:]
    if words and not words[0].quoted and words[0].text in HEADER_KEYWORDS:
        words = []
    if words and words[0].text == "[[":
        words = []
    if words or subs:
        commands.append(SimpleCommand(words, subs))
