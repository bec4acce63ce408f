"""The `sigma` command line."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  sigma curate local-system                       curate this machine's man pages, docs, configs and logs
  sigma curate --input corpus.jsonl --output out/ curate your own corpus with the default stages
  sigma stats out/local-system                    what is in the shards, and what was dropped why
  sigma verify out/local-system                   every file against the manifest's checksums
  sigma audit out/local-system                    kept documents holding markup source, minified code, PEM blocks
  sigma inspect out/local-system --reason exact_duplicate    dropped duplicates beside what was kept
  sigma diff out/run-a out/run-b                  what changed between two runs
  sigma flywheel configs/loop/demo.yaml           the flywheel, two rounds: curate -> train -> eval -> synthesize
  sigma ablate configs/ablate/curation.yaml       raw vs curated data: same model and tokens, scored on the suite
  sigma eval nl2cmd --model smollm2 --data pairs.jsonl    NL -> command scores of a model
  sigma check-commands pairs.jsonl                check commands against this machine's man pages
"""


def _curate(args) -> int:
    from jobs.curate import run_from_args

    return run_from_args(args)


def _flywheel(args) -> int:
    from jobs.flywheel import run_from_args

    return run_from_args(args)


def _ensure_suite(*args, **kwargs):
    from stages.ingest.eval_suite import ensure_suite

    return ensure_suite(*args, **kwargs)


def _stats(args) -> int:
    import json

    from rich.console import Console

    from pipeline.stats import compute_stats, render_stats

    tokenizer = None
    try:
        if args.tokenizer:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(args.tokenizer)
        from jobs.flywheel_report import flywheel_rounds

        loop = flywheel_rounds(args.dir)  # a flywheel's folder: its newest round's data, and scores by round
        stats = compute_stats(loop[0] if loop else args.dir, tokenizer=tokenizer)
    except FileNotFoundError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        return 2
    if args.html:
        from pipeline.report import write_html

        write_html(stats, args.html, rounds=loop[1] if loop else None)
        Console(stderr=True).print(f"report: {args.html}")
    if args.json:
        print(json.dumps(stats, indent=1))
    elif not args.html:
        render_stats(stats, Console(soft_wrap=True))  # whole lines in a log or CI
    return 0 if stats["balance"]["balanced"] else 1


def _verify(args) -> int:
    from rich.console import Console

    from pipeline.verify import verify_output

    console = Console(stderr=True)
    try:
        problems = verify_output(args.dir)
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    if not problems:
        console.print(f"[green]{args.dir}: every file matches the manifest; the ledger balances[/green]")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    from jobs.curate import add_arguments
    from jobs.inspect import add_diff, add_inspect
    from sigma.model_commands import register as register_model_commands

    parser = argparse.ArgumentParser(prog="sigma", description="Curate system data on Ray into Parquet shards, "
                                     "and train DiffQKV language models on them.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("curate", help="run a curation job", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run a curation job: read the inputs, run the stages on Ray, write Parquet "
                       "shards, the ledger of every dropped document, and manifest.json. A killed job, run again "
                       "on the same output, resumes where it stopped.",
                       epilog="examples:\n  sigma curate local-system\n  sigma curate configs/local-system.yaml "
                       "--output out/sys\n  sigma curate --input data.jsonl /etc --output out/mine\n"
                       "  sigma curate job.yaml --address auto   # on a running Ray cluster")
    add_arguments(p)
    p.set_defaults(func=_curate)
    p = sub.add_parser("stats", help="statistics of a curate output",
                       description="Documents and bytes by source, kind and shard; drops by stage and reason; "
                       "the ledger balance; a length histogram. Streams over the shards.",
                       epilog="examples:\n  sigma stats out/local-system --json\n"
                       "  sigma stats out/local-system --html report.html\n"
                       "  sigma stats out/loop --html loop.html     # a flywheel: its newest round, and scores by round",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="a curate output folder (holding manifest.json), or a flywheel's folder")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with plots")
    p.add_argument("--tokenizer", metavar="FILE", help="a tokenizer.json to count tokens with (words are always counted)")
    p.set_defaults(func=_stats)
    add_inspect(sub)
    add_diff(sub)
    p = sub.add_parser("verify", help="check a curate output against its manifest",
                       description="Check that every shard, ledger and rejects file is present and has the size, "
                       "row count and sha256 the manifest records, that no unlisted file is there, and that the "
                       "ledger balances. Exit status 1 when anything is off.",
                       epilog="example:\n  sigma verify out/local-system",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="a curate output folder (holding manifest.json)")
    p.set_defaults(func=_verify)
    from jobs.audit import register as register_audit
    from jobs.check_commands import register as register_check_commands
    from jobs.classifier import register as register_classifier
    from jobs.refilter import register as register_refilter

    register_audit(sub)
    register_classifier(sub)
    register_refilter(sub)
    register_check_commands(sub)
    register_model_commands(sub, build_suite=_ensure_suite)
    from jobs.flywheel import add_arguments as add_flywheel_arguments

    # `loop` is the command's earlier name; the training loop itself is `sigma train`
    p = sub.add_parser("flywheel", aliases=["loop"], help="run the flywheel: curate -> train -> eval -> synthesize, "
                       "round after round",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run rounds of curate (new sources plus the last round's synthetic rows, through "
                       "the same filters and dedupe) -> tokenize -> train (from the last round's checkpoint) -> eval "
                       "(the frozen eval suite's bits per byte and NL -> command scores, perplexity on the round's own "
                       "held-out documents) -> synthesize (the round's model or a fixed engine such as SmolLM2; each "
                       "answer checked against the machine, a failed one sampled again). Each round is a folder "
                       "with its manifest and report; a killed loop, run again, resumes at the step where it stopped. "
                       "Prints the table of rounds at the end.",
                       epilog="examples:\n  sigma flywheel configs/loop/demo.yaml --output out/loop\n"
                       "  sigma flywheel configs/loop/demo.yaml --output out/loop --rounds 3   # one more round")
    add_flywheel_arguments(p)
    p.set_defaults(func=_flywheel)
    from jobs.ablate import register as register_ablate

    register_ablate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.ablate import with_phase

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(with_phase(argv) if argv[:1] == ["ablate"] else argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
