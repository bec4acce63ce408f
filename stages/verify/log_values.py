"""Does an explanation of log lines name only fields and values the lines hold?

A value is what the log template miner masks as a variable (`stages/variable_mask.py`:
numbers, addresses, ids, hex, times), except small counts (one or two digits: "3 attempts"
counts lines, it quotes none). A field is a word with the shape of an identifier rather than
English: `dfs.DataNode$PacketResponder`, `pam_unix`, `sshd[1234]`, `uid=0`, `/var/log/auth.log`, an
option (`-I`), or anything quoted or in backquotes. Each must occur in the excerpt (any case for
fields); the first that does not is the problem: `unknown_value:TOKEN` or `unknown_field:TOKEN`.
"""

from __future__ import annotations

import re

from stages.variable_mask import mask

QUOTED = re.compile(r"`([^`\n]{2,80})`|\"([^\"\n]{2,80})\"|'([^'\n]{3,80})'")
TOKEN = re.compile(r"\S+")
EDGE = "()[]{}<>,;:.!?\"'`*"
SMALL_COUNT = re.compile(r"^\d{1,2}$")
FIELD = re.compile(r"[A-Za-z0-9][_.$/=\[\]:@][A-Za-z0-9/]|^/[A-Za-z]|^--?[A-Za-z]")  # pam_unix, a.b, uid=0, sshd[12], /path, -I
PROSE = {"e.g", "i.e", "etc", "vs", "a.m", "p.m", "and/or", "N/A", "I/O", "i/o", "TCP/IP", "w/o", "read/write"}


def _token(raw: str) -> str:
    token = raw.strip(EDGE)
    if token.endswith("'s"):
        token = token[:-2]
    return token


def unknown_mention(explanation: str, excerpt: str) -> str | None:
    """The first field or value of `explanation` that `excerpt` does not hold; None when all are there."""
    haystack, folded = excerpt, excerpt.lower()
    for match in QUOTED.finditer(explanation):
        quoted = next(g for g in match.groups() if g).strip()
        if quoted not in haystack and quoted.lower() not in folded:
            return f"unknown_field:{quoted}"
    for raw in TOKEN.findall(QUOTED.sub(" ", explanation)):
        token = _token(raw)
        if len(token) < 2 or token in PROSE or token.lower().rstrip(".") in PROSE:
            continue
        if mask(token) != token and not SMALL_COUNT.match(token):
            if token not in haystack:
                return f"unknown_value:{token}"
        elif FIELD.search(token) and token.lower() not in folded:
            return f"unknown_field:{token}"
    return None
