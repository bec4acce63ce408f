"""The curate job: sources -> stages -> Parquet shards, ledger and manifest.

Runs the same on an embedded local Ray (the default) and on a cluster:

    python -m jobs.curate configs/local-system.yaml --output out/local-system
    ray job submit --working-dir . -- python -m jobs.curate JOB.yaml --output /shared/out --address auto
"""

from __future__ import annotations

import argparse
import errno
import glob
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import configs
from pipeline.config import ConfigError, JobConfig, load_job, parse_job
from pipeline.progress import Progress
from pipeline.runner import Job, Runner
from pipeline.segment import StageFailed
from stages.ingest.unique_ids import UniqueIds
from stages.registry import build_source, build_stages

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DEFAULT_STAGES = ["redact", "basic_filter", "exact_dedupe", "near_dedupe"]  # redaction first: rejects keep text


def resolve_job_file(name: str) -> Path | Traversable:
    """A path, or the name of a job shipped in configs/ (`local-system`), read from the package."""
    return configs.find(name, "", "job file")


JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json")


def input_for_path(path: str) -> dict:
    """Guess an input's type from its path, for the quick form `sigma curate --input PATH`: a
    record file, or a folder holding only record files, is a corpus; a man tree is man pages;
    anything else is a tree of files."""
    lower = path.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return {"type": "jsonl", "paths": [path]}
    if lower.endswith(".parquet"):
        return {"type": "parquet", "paths": [path]}
    if lower.endswith((".warc", ".warc.gz", ".wet", ".wet.gz")):
        return {"type": "warc", "paths": [path]}
    if os.path.isdir(path):
        entries = os.listdir(path)
        if any(d.startswith("man") and d[3:4].isdigit() for d in entries):
            return {"type": "man", "roots": [path]}
        files = [e.lower() for e in entries if os.path.isfile(os.path.join(path, e)) and not e.startswith(".")]
        if files and all(f.endswith(JSONL_SUFFIXES) for f in files):
            return {"type": "jsonl", "paths": [path]}
        if files and all(f.endswith(".parquet") for f in files):
            return {"type": "parquet", "paths": [path]}
    return {"type": "files", "roots": [path]}


def quick_job(inputs: list[str], output: str) -> JobConfig:
    return parse_job({"name": "quick", "output": output, "inputs": [input_for_path(p) for p in inputs],
                      "stages": list(DEFAULT_STAGES)}, "--input")


PATH_OPTIONS = ("roots", "paths", "repos")  # the source options that name local inputs


def check_inputs(config: JobConfig) -> None:
    """Every local input a job names exists (a glob matches something), before the job starts:
    a typo is an error that names the path, not a run that keeps nothing. Object-store and web
    inputs (`s3://`, `https://`) are the sources' own to check; files that vanish later during the
    run are ledger entries."""
    for index, inp in enumerate(config.inputs):
        for key in PATH_OPTIONS:
            values = inp.options().get(key) or []
            for value in [values] if isinstance(values, str) else values:
                if not isinstance(value, str) or "://" in value:
                    continue
                path = os.path.expanduser(value)
                magic = any(c in path for c in "*?[")
                found = glob.glob(path, recursive=True) if magic else os.path.lexists(path)
                if not found:
                    what = "matches nothing" if magic else "does not exist"
                    raise ConfigError(f"inputs[{index}] ({inp.type}): {key}: {value} {what}")


def build_job(config: JobConfig, output: str | None = None) -> Job:
    output = output or config.output
    if not output:
        raise ConfigError("no output: give --output DIR, or `output:` in the job file")
    check_inputs(config)
    sources = [build_source(c, i) for i, c in enumerate(config.inputs)]
    stages = [UniqueIds(), *build_stages(config.stages)]  # ids unique in every output, before any stage
    return Job(config.model_copy(update={"output": output}), sources, stages, Path(output).absolute())


def curate(config: JobConfig, output: str | None = None, overwrite: bool = False, progress: bool = False) -> dict:
    job = build_job(config, output)
    return Runner(job, Progress(enabled=progress)).run(overwrite=overwrite)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", nargs="?", help="job file (YAML), or the name of one in configs/ (local-system)")
    parser.add_argument("--input", "-i", nargs="+", metavar="PATH",
                        help="quick form: curate these paths (directories, .jsonl, .parquet) with the default stages")
    parser.add_argument("--output", "-o", help="output folder (overrides the job file's `output:`)")
    parser.add_argument("--address", help="Ray cluster address (`auto`, `ray://host:10001`); default: embedded Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the output folder holds and start over")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display or summary")
    parser.add_argument("--json", action="store_true", help="print the manifest's totals as JSON at the end")


def run_from_args(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.stats import compute_stats, render_stats

    console = Console(stderr=True, soft_wrap=True)  # whole lines in a log or CI, too
    try:
        if args.input:
            if args.job:
                raise ConfigError("give a job file or --input, not both")
            if not args.output:
                raise ConfigError("--input needs --output DIR")
            config = quick_job(args.input, args.output)
        elif args.job:
            config = load_job(resolve_job_file(args.job))
        else:
            raise ConfigError("give a job file (or a name in configs/), or --input PATH... --output DIR")
        ray_overrides = {k: v for k, v in (("address", args.address), ("num_cpus", args.num_cpus)) if v is not None}
        config = config.model_copy(update={"ray": config.ray.model_copy(update=ray_overrides)})
        manifest = curate(config, args.output, overwrite=args.overwrite, progress=not args.quiet)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    except Exception as exc:
        failure = stage_failure(exc)
        if failure:
            console.print(f"[red]error:[/red] {failure}. Fix the stage or its options and run the same command "
                          "again: it resumes where it stopped.")
            return 4
        if not _disk_full(exc):
            raise
        console.print(f"[red]error:[/red] no space left on the output device ({args.output or config.output}). "
                      "Nothing half-written is visible to readers; free some space and run the same command "
                      "again: it resumes where it stopped.")
        return 3
    root = Path(args.output or config.output)
    if args.json:
        import json

        print(json.dumps(manifest["totals"], indent=1))
    elif not args.quiet:
        if manifest.get("resumed"):
            console.print(f"[dim]{root}: already complete; --overwrite runs it again[/dim]")
        render_stats(compute_stats(root), Console(soft_wrap=True))
    if not manifest["totals"]["balanced"]:
        console.print("[red]the ledger does not balance: input != kept + dropped (see manifest.json)[/red]")
        return 1
    return 0


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__


def stage_failure(exc: BaseException) -> str | None:
    """The message of a StageFailed raised in this process or in a Ray worker (as text there)."""
    for e in _chain(exc):
        if isinstance(e, StageFailed):
            return str(e)
        found = re.search(r"StageFailed: (stage .*)", str(e))
        if found:
            return found.group(1)
    return None


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc` comes from a full disk, in this process or in a Ray worker (whose error
    reaches the driver as text: Ray Data's wrapping drops the exception chain)."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "[Errno 28]" in str(e) or "No space left on device" in str(e):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.curate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
