"""`sigma inspect` and `sigma diff`: look at what a run kept and dropped, and what changed between runs."""

from __future__ import annotations

import argparse
import difflib
import json
import sys

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _doc_panel(doc: dict, title: str, style: str, lines: int) -> Panel:
    text = doc.get("text") or ""
    shown = "\n".join(text.split("\n")[:lines])
    more = len(text.split("\n")) - lines
    body = Text(shown)
    if more > 0:
        body.append(f"\n... {more} more lines", style="dim")
    info = Text(f"{doc.get('id')}  {doc.get('source')}/{doc.get('kind')}  {doc.get('uri')}", style="dim")
    return Panel(Group(info, body), title=title, border_style=style, title_align="left")


def unknown_filter(args: argparse.Namespace) -> str | None:
    """A one-line error for a --kind, --source, --reason or --stage value the run does not hold at
    all, with the values it holds and the nearest one; None when every given value occurs."""
    from pipeline.inspect import values

    dropped = args.reason is not None or args.stage is not None or args.dropped
    for column in ("kind", "source", "reason", "stage"):
        given = getattr(args, column)
        if given is None:
            continue
        known = values(args.dir, column, dropped=dropped or column in ("reason", "stage"))
        if given not in known:
            near = difflib.get_close_matches(given, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            which = "dropped documents'" if column in ("reason", "stage") or dropped else "kept documents'"
            return f"no document has --{column} {given}{hint} (the {which} {column}s: {', '.join(known) or 'none'})"
    return None


def run_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect import sample

    console = Console()
    try:
        samples = sample(args.dir, kind=args.kind, source=args.source, reason=args.reason, stage=args.stage,
                         where=args.where, limit=args.limit, seed=args.seed, dropped=args.dropped)
    except FileNotFoundError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    except Exception as exc:  # a bad --where is a SQL error: say it plainly
        if type(exc).__module__.startswith("duckdb"):
            Console(stderr=True).print(f"[red]error in --where:[/red] {exc}")
            return 2
        raise
    problem = unknown_filter(args) if not samples else None
    if problem:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {problem}", highlight=False)
        return 2
    if args.json:
        print(json.dumps([{"doc": s.doc, "dropped": s.dropped, "kept_twin": s.kept_twin, "notes": s.notes}
                          for s in samples], indent=1, default=str))
        return 0
    if not samples:
        console.print("[yellow]no document matches[/yellow] (each filter's value occurs, not all of them together)")
        return 0
    panels = []
    for s in samples:
        if s.dropped:
            title = f"dropped by {s.doc['stage']}: {s.doc['reason']}" + (f" ({s.doc['detail']})" if s.doc.get("detail") else "")
            dropped = _doc_panel(s.doc, title, "red", args.lines)
            if s.kept_twin is not None:
                grid = Table.grid(expand=True, padding=(0, 1))
                grid.add_column(ratio=1)
                grid.add_column(ratio=1)
                grid.add_row(dropped, _doc_panel(s.kept_twin, "kept instead", "green", args.lines))
                panels.append(grid)
            else:
                panels.append(dropped)
            panels += [Text(n, style="dim") for n in s.notes]
        else:
            scores = {k: v for k, v in s.doc.items() if "." in k and isinstance(v, (int, float))}
            title = "kept" + ("  " + "  ".join(f"{k}={v:.3g}" for k, v in sorted(scores.items())) if scores else "")
            panels.append(_doc_panel(s.doc, title, "green", args.lines))
    if args.pager and sys.stdout.isatty():
        with console.pager(styles=True):
            for p in panels:
                console.print(p)
    else:
        for p in panels:
            console.print(p)
    return 0


def add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="sample documents of a run by filters", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Show a repeatable random sample of documents: kept ones, or (with --reason, "
                       "--stage or --dropped) dropped ones with their reason and text; a duplicate is shown beside "
                       "the document that was kept instead.",
                       epilog="examples:\n  sigma inspect out/run --kind log\n"
                       "  sigma inspect out/run --reason near_duplicate --limit 3\n"
                       "  sigma inspect out/run --where '\"stats.chars\" > 100000'\n"
                       "  sigma inspect out/run --where 'quality.score < 0.2' --kind doc")
    p.add_argument("dir", help="a curate output folder")
    p.add_argument("--kind", help="log, config, doc, code, ...")
    p.add_argument("--source", help="man, file, jsonl, ...")
    p.add_argument("--reason", help="dropped for this reason (exact_duplicate, too_short, unreadable, ...)")
    p.add_argument("--stage", help="dropped by this stage")
    p.add_argument("--dropped", action="store_true", help="sample dropped documents (any reason)")
    p.add_argument("--where", help="a SQL condition over the columns (DuckDB); dotted names need no quotes")
    p.add_argument("--limit", "-n", type=int, default=5, help="documents to show (default 5)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (same seed, same sample)")
    p.add_argument("--lines", type=int, default=25, help="lines of text per document (default 25)")
    p.add_argument("--pager", action="store_true", help="page the output (less)")
    p.add_argument("--json", action="store_true", help="print the sample as JSON")
    p.set_defaults(func=run_inspect)


def run_diff(args: argparse.Namespace) -> int:
    from pipeline.diff import diff_runs

    try:
        d = diff_runs(args.a, args.b, sample=args.ids)
    except FileNotFoundError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    if args.json:
        print(json.dumps(d, indent=1, default=str))
        return 0
    console = Console()
    console.print(f"[bold]A[/bold] {d['a']}\n[bold]B[/bold] {d['b']}")
    if d["config"]:
        t = Table(title="configuration", title_justify="left", title_style="bold")
        for c in ("setting", "A", "B"):
            t.add_column(c)
        for k, v in d["config"].items():
            t.add_row(k, json.dumps(v["a"]), json.dumps(v["b"]))
        console.print(t)
    else:
        console.print("[dim]same configuration[/dim]")
    for title, key in (("totals", "totals"), ("dropped by reason", "dropped_by_reason"),
                       ("documents out of each stage", "stages_out"), ("documents by source", "by_source"),
                       ("documents by kind", "by_kind")):
        rows = d[key]
        if not rows:
            continue
        t = Table(title=title, title_justify="left", title_style="bold")
        for i, c in enumerate(("", "A", "B", "B - A")):
            t.add_column(c, justify="left" if i == 0 else "right")
        for k, v in rows.items():
            if v["delta"] is None:  # a stage only one run ran
                t.add_row(str(k), *("not run" if x is None else f"{x:,}" for x in (v["a"], v["b"])), "[dim]-")
                continue
            style = "green" if v["delta"] > 0 else "red" if v["delta"] < 0 else "dim"
            t.add_row(str(k), f"{v['a']:,}", f"{v['b']:,}", f"[{style}]{v['delta']:+,}")
        console.print(t)
    for label in ("added", "removed"):
        info = d["ids"][label]
        console.print(f"[bold]{info['count']:,} documents {label}[/bold] in B"
                      + (f" (in {'A' if label == 'added' else 'B'}: " + ", ".join(
                          f"{r} {n:,}" for r, n in info["by_reason_in_other_run"].items()) + ")" if info["count"] else ""))
        for r in info["sample"]:
            why = f"  {r['stage']}: {r['reason']}" + (f" ({r['detail']})" if r["detail"] else "") if r["reason"] else ""
            console.print(f"  {r['id']}[dim]{why}[/dim]")
    return 0


def add_diff(sub) -> None:
    p = sub.add_parser("diff", help="what changed between two runs", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Compare two curate outputs (or two rounds of a loop): the settings that differ, "
                       "totals, drops by reason, documents per stage, source and kind, and the documents added or "
                       "removed by id, with the reason the other run dropped them.",
                       epilog="example:\n  sigma diff out/strict out/lenient --ids 20")
    p.add_argument("a", help="the first run (A)")
    p.add_argument("b", help="the second run (B)")
    p.add_argument("--ids", type=int, default=10, help="ids to list for added and removed documents (default 10)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=run_diff)
