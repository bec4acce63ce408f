"""Check command lines against this machine's man pages.

    sigma check-commands pairs.jsonl                       one JSON line back per row, with its `verdict`
    sigma check-commands nl2bash.jsonl --field cmd --output checked.jsonl
    sigma check-commands pairs.jsonl --man-root /opt/man --man-root /usr/share/man

Each input line is a JSON object with the command in `command` (or `--field`); every other field
passes through. The verdict is `ok`, or the first problem found: `unknown_program:NAME` (no man
page or shell builtin here), `unknown_option:NAME:-Z` (an option NAME's page never names),
`unparsable` (an unclosed quote or substitution). A line that is not a JSON object, or has no
command, comes back with `unreadable:not_json` or `unreadable:no_command`: no row is dropped.
Pipelines, lists, subshells, `$(...)`, `sudo`, `env`, `xargs`, `find -exec ... ;`, `sh -c` are
followed; see `stages/verify/commands.py`. A summary (rows, ok, the most common problems) goes
to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from stages.verify.commands import OK, CommandChecker


def checked_rows(lines, checker: CommandChecker, field: str):
    """(row, verdict) per input line; blank lines are skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            yield {"line": line.rstrip("\n")}, "unreadable:not_json"
            continue
        if not isinstance(row, dict):
            yield {"line": line.rstrip("\n")}, "unreadable:not_json"
        elif not isinstance(row.get(field), str):
            yield row, "unreadable:no_command"
        else:
            yield row, checker.check(row[field])


def run_from_args(args: argparse.Namespace) -> int:
    path = Path(args.input)
    if args.input != "-" and not path.is_file():
        print(f"error: {args.input} is not a file: give a JSONL file of commands (or - for stdin)", file=sys.stderr)
        return 2
    roots = args.man_root or ["/usr/share/man"]
    missing = [r for r in roots if not Path(r).is_dir()]
    if missing:
        print(f"error: --man-root {missing[0]} is not a folder of man pages", file=sys.stderr)
        return 2
    checker = CommandChecker(roots)
    out = open(args.output, "w") if args.output else sys.stdout
    reasons: Counter = Counter()
    rows = 0
    with (sys.stdin if args.input == "-" else open(path, encoding="utf-8", errors="replace")) as lines:
        for row, verdict in checked_rows(lines, checker, args.field):
            rows += 1
            reasons[verdict.split(":", 1)[0]] += 1
            out.write(json.dumps({**row, "verdict": verdict}, ensure_ascii=False) + "\n")
    if args.output:
        out.close()
    problems = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common() if reason != OK)
    print(f"{rows} rows: {reasons[OK]} ok" + (f"; {problems}" if problems else ""), file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("check-commands", help="check command lines against this machine's man pages",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="JSON lines with a command field (- for stdin)")
    parser.add_argument("--field", default="command", help="the field holding the command (default: command)")
    parser.add_argument("--man-root", action="append", metavar="DIR",
                        help="a man page tree to read (repeatable; default /usr/share/man)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write the rows here instead of stdout")
    parser.set_defaults(func=run_from_args)
