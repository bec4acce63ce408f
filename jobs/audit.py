"""`sigma audit OUT`: the kept documents of a curate output that hold what training text should
not (roff, Texinfo or HTML source, minified code, PEM blocks, long base64 runs, over-long lines),
counted per kind with samples. Exit status 1 when any check matched, 0 when none did, 2 when
OUT is no curate output.

    sigma audit out/local-system
    sigma audit out/local-system --samples 10 --max-line-chars 2000
    sigma audit out/local-system --json > audit.json
"""

from __future__ import annotations

import argparse
import json


def run_from_args(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.audit import audit_output, render_audit

    try:
        audit = audit_output(args.dir, max_line_chars=args.max_line_chars, samples=args.samples)
    except FileNotFoundError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    if args.json:
        print(json.dumps(audit, indent=1))
    else:
        render_audit(audit, Console(soft_wrap=True))
    return 1 if any(c["documents"] for c in audit["checks"].values()) else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="count kept documents that hold markup source, minified code, "
                                   "PEM blocks, base64 runs or over-long lines", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="a curate output folder (holding manifest.json)")
    parser.add_argument("--samples", type=int, default=3, help="documents to show per check (default 3)")
    parser.add_argument("--max-line-chars", type=int, default=1000,
                        help="a line at least this long counts as over-long (default 1000)")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    parser.set_defaults(func=run_from_args)
