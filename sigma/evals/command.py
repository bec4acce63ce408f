"""``sigma eval``: run an evaluation on a model of any backend, print the scores, write JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a sigma run or step_* folder; a Hugging Face model folder; `smollm2` (the packaged "
                        "SmolLM2-135M-Instruct); with --url, the served model's name")
    parser.add_argument("--backend", choices=["sigma", "transformers", "vllm"],
                        help="default: sigma for a folder with a sigma checkpoint, else transformers (vllm with --url)")
    parser.add_argument("--gguf-file", help="a GGUF file inside the --model folder (transformers)")
    parser.add_argument("--url", help="an OpenAI-compatible server (vllm serve), e.g. http://127.0.0.1:8000")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int, default=8, help="prompts generated together")


def engine_spec(args: argparse.Namespace):
    from sigma.backends.base import EngineSpec
    from sigma.checkpoint import find_checkpoint

    backend = args.backend
    if backend is None:
        backend = "vllm" if args.url else "sigma" if find_checkpoint(args.model) is not None else "transformers"
    return EngineSpec(backend=backend, model=args.model, gguf_file=args.gguf_file, url=args.url, device=args.device,
                      dtype=args.dtype, max_batch_size=args.batch_size)


def register(subparsers: argparse._SubParsersAction, build_suite=None) -> None:
    """``build_suite``: a function like ``stages.ingest.eval_suite.ensure_suite`` that builds a suite
    not yet built (the full install passes it); without it `sigma eval suite` reads built suites only."""
    parser = subparsers.add_parser(
        "eval", help="evaluate a model: the frozen suite, held-out perplexity per kind, NL -> command",
        formatter_class=RAW,
        description=(
            "Evaluate a model on system tasks.\n\n"
            "  suite       the frozen eval suite (configs/eval/suite.yaml): bits per byte per kind of\n"
            "              held-out text, NL -> command bits per byte and multiple choice (chance 0.25)\n"
            "  nl2cmd      given a task in English, write the bash command; exact match, command-name\n"
            "              accuracy and token F1 on any JSONL of {\"nl\", \"cmd\"}, few-shot\n"
            "  perplexity  held-out perplexity and bits per byte per kind of document on curated shards\n\n"
            "examples:\n"
            "  sigma eval suite --model runs/tiny\n"
            "  sigma eval suite --model smollm2 --backend transformers --json out/smollm2-suite.json\n"
            "  sigma eval nl2cmd --model smollm2 --data ../shared/data/nl2bash/dev.jsonl --limit 100 --shots 3\n"
            "  sigma eval nl2cmd --model runs/tiny --data pairs.jsonl --json out/nl2cmd.json\n"
            "  sigma eval perplexity --model runs/tiny --data out/man out/logs --held-out-fraction 0.05\n"
            "  sigma eval nl2cmd --backend vllm --url http://127.0.0.1:8000 --model smollm2 --data pairs.jsonl"
        ),
    )
    commands = parser.add_subparsers(dest="eval_command", required=True)
    suite = commands.add_parser(
        "suite", help="the frozen eval suite: bits per byte per kind, NL -> command log-likelihood tasks",
        formatter_class=RAW,
        description=(
            "Score a model on the frozen eval suite: bits per byte (total negative log-likelihood in bits\n"
            "over UTF-8 bytes, comparable across tokenizers) on each kind of held-out text; the gold\n"
            "command's bits per byte given the request; multiple choice between the gold command and 3\n"
            "distractors by log-likelihood per byte (accuracy with a 95% Wilson interval, chance 0.25).\n"
            "The suite is built the first time from its definition and read from its folder afterwards;\n"
            "its hash (of the built data) is in every result. A Sigma checkpoint whose training data\n"
            "overlaps the suite, and was not curated with `decontaminate: {suite: ...}` against it, is\n"
            "refused (exit 2) unless --allow-contaminated."),
    )
    add_engine_arguments(suite)
    suite.add_argument("--suite", default="configs/eval/suite.yaml", help="the suite's definition (default: %(default)s)")
    suite.add_argument("--build-dir", help="where built suites live (default: the definition's build_dir)")
    suite.add_argument("--rebuild", action="store_true", help="build the suite again from its sources (a new hash if they changed)")
    suite.add_argument("--limit", type=int, help="at most this many documents per kind and multiple-choice items")
    suite.add_argument("--allow-contaminated", action="store_true", help="score a model trained on suite text; the result says so")
    suite.add_argument("--json", metavar="FILE", help="write the result here")
    suite.set_defaults(func=suite_command, build_suite=build_suite)
    nl2cmd = commands.add_parser("nl2cmd", help="NL -> bash command", formatter_class=RAW,
                                 description="Exact match, command-name accuracy and token F1 of generated commands.")
    add_engine_arguments(nl2cmd)
    nl2cmd.add_argument("--data", required=True, help="JSONL of {\"nl\": ..., \"cmd\": ...}")
    nl2cmd.add_argument("--shots", type=int, default=3, help="examples in the prompt (set aside, never scored)")
    nl2cmd.add_argument("--shots-from", help="take the examples from this JSONL instead of --data")
    nl2cmd.add_argument("--limit", type=int, default=100, help="items scored (0: all)")
    nl2cmd.add_argument("--seed", type=int, default=0, help="the hash order that picks examples and items")
    nl2cmd.add_argument("--max-new-tokens", type=int, default=64)
    nl2cmd.add_argument("--json", metavar="FILE", help="write the result here")
    nl2cmd.set_defaults(func=nl2cmd_command)
    ppl = commands.add_parser("perplexity", help="held-out perplexity per kind", formatter_class=RAW,
                              description="Held-out perplexity per kind on curated shard folders: the documents "
                              "whose id hashes under --held-out-fraction, as `sigma train` holds them out.")
    add_engine_arguments(ppl)
    ppl.add_argument("--data", nargs="+", required=True, metavar="DIR", help="curate output folders")
    ppl.add_argument("--held-out-fraction", type=float, default=0.01)
    ppl.add_argument("--max-documents", type=int, default=64, help="per kind (0: all)")
    ppl.add_argument("--max-chars", type=int, default=4000, help="of each document (0: all)")
    ppl.add_argument("--json", metavar="FILE", help="write the result here")
    ppl.set_defaults(func=perplexity_command)


def _write(result: dict, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=1) + "\n")


def suite_table(result: dict):
    from rich.table import Table

    mc = result["mc"]
    table = Table(title=f"suite {result['suite']['name']} ({result['suite']['hash'][:12]}): {result['model']['model']} "
                  f"({result['model']['engine']})" + (" [CONTAMINATED]" if result.get("contaminated") else ""))
    for column in ("measure", "value", "detail"):
        table.add_column(column, justify="left" if column != "value" else "right")
    for kind, value in result["bpb"].items():
        table.add_row(f"bits/byte: {kind}", _number(value), f"{result['documents'][kind]} documents, "
                      f"{result['bytes'][kind]:,} bytes")
    table.add_row("bits/byte: all", _number(result["bpb_all"]), "")
    table.add_row("nl2cmd: gold command bits/byte", _number(result["nl2cmd_bpb"]), "given the request")
    ci = mc["ci95"]
    table.add_row("nl2cmd: multiple choice accuracy", _number(mc["accuracy"]),
                  f"95% CI {ci[0]:.3f}-{ci[1]:.3f}, n={mc['n']}, chance {mc['chance']:.2f}")
    table.add_row("seconds per item", f"{result['seconds_per_item']:.4f}", f"{result['seconds']:.1f} s in all")
    return table


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def suite_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sigma.backends.base import load_backend
    from sigma.evals.suite import ContaminationError, SuiteNotBuilt, check_uncontaminated, load_suite, score_suite

    console = Console(stderr=True)
    try:
        if args.build_suite:
            suite = args.build_suite(args.suite, build_dir=args.build_dir, rebuild=args.rebuild, progress=True)
        elif args.rebuild:
            raise ValueError("--rebuild needs the suite's sources, read by the full install's `sigma` command")
        else:
            suite = load_suite(args.suite, build_dir=args.build_dir)
    except (ValueError, SuiteNotBuilt) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    contaminated = None
    try:
        check_uncontaminated(args.model, suite)
    except ContaminationError as exc:
        if not args.allow_contaminated:
            console.print(f"[red]refused:[/red] {exc}")
            return 2
        contaminated = str(exc)
        console.print(f"[yellow]scoring a contaminated model (--allow-contaminated):[/yellow] {exc}")
    result = score_suite(load_backend(engine_spec(args)), suite, limit=args.limit)
    if contaminated:
        result["contaminated"] = contaminated
    Console().print(suite_table(result))
    _write(result, args.json)
    return 0


def nl2cmd_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sigma.backends.base import load_backend
    from sigma.evals.nl2cmd import evaluate_nl2cmd

    result = evaluate_nl2cmd(load_backend(engine_spec(args)), args.data, shots=args.shots, limit=args.limit or None,
                             seed=args.seed, max_new_tokens=args.max_new_tokens, shots_from=args.shots_from,
                             batch_size=args.batch_size)
    table = Table(title=f"nl2cmd: {result['model']} ({result['engine']}), {result['items']} items, "
                  f"{result['shots']}-shot")
    for name in result["scores"]:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.3f}" for v in result["scores"].values()))
    Console().print(table)
    _write(result, args.json)
    return 0


def perplexity_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sigma.backends.base import load_backend
    from sigma.evals.perplexity import evaluate_perplexity

    result = evaluate_perplexity(load_backend(engine_spec(args)), args.data, held_out_fraction=args.held_out_fraction,
                                 max_documents=args.max_documents or None, max_chars=args.max_chars or None)
    table = Table(title=f"held-out perplexity: {result['model']} ({result['engine']})")
    for column in ("kind", "documents", "tokens", "loss", "perplexity", "bits/byte"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, s in [*result["kinds"].items(), ("all", result["all"])]:
        table.add_row(kind, str(s["documents"]), f"{s['tokens']:,}", *(f"{s[k]:.3f}" if s[k] is not None else "-"
                                                                         for k in ("loss", "perplexity", "bits_per_byte")))
    Console().print(table)
    _write(result, args.json)
    return 0
