"""`sigma refilter`: apply new thresholds to a finished curate output without recomputing a score.

Every filter stores its signals as columns in the shards, and its decision reads only those
columns. `refilter` is a curation on the Ray runner whose input is the parent's shards (the
`curate_output` source): it rebuilds the job's filters with the options given by `--set` and runs
them in decide-only mode (their `decide` over the stored columns; no signal, no model). It is
distributed and resumable like a curation (run the same command again after a kill), and writes
the same output: the rows still kept, a ledger of the rows the new thresholds drop (stage,
reason, detail), and a manifest that balances against the parent's kept rows and names the parent
and the overrides (`derived_from`). Stages without a decision over stored columns (redaction,
dedupe) are not re-run: their effect is already in the shards. Only options that a decision reads
(the rules' thresholds, `kinds`, `languages`) can be set, and an option that changes a signal is
an error, except for a filter whose signal reads only stored columns (`composite_score`'s
weights): its signal is recomputed.

A threshold can only be tightened this way: rows the first run dropped are not in the shards.
To explore looser thresholds, run the job once with the filters' thresholds off (`null`), which
keeps every row with its scores, then refilter as often as needed.

    sigma refilter out/run --set gopher_quality.min_words=100 language_filter.min_score=0.5 --output out/run-strict
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from pipeline.config import ConfigError, StageConfig, parse_job
from pipeline.manifest import declared, read_manifest
from pipeline.progress import Progress
from pipeline.runner import Job, Runner
from pipeline.stage import DecideOnly, Filter
from stages.ingest.curate_output import CurateOutputSource
from stages.presets import expand_presets
from stages.registry import build_source, build_stage


def parse_sets(items: list[str]) -> dict[str, dict]:
    """`stage.option=value` (value parsed as YAML: 100, 0.5, null, [en, de]) -> {stage: {option: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, option = key.partition(".")
        if not sep or not dot or not stage or not option:
            raise ConfigError(f"--set {item!r}: write stage.option=value")
        out.setdefault(stage, {})[option] = yaml.safe_load(value)
    return out


def build_refilter(parent: str | Path, output: str | Path, overrides: dict[str, dict],
                   ray: dict | None = None) -> Job:
    """The refilter as a job: the parent's shards as the source, the parent's filters with the
    overrides in decide-only mode as the stages, the parent's writer settings."""
    parent, output = Path(parent), Path(output)
    if output.absolute() == parent.absolute():
        raise ConfigError(f"--output {output} is the parent output: give another folder")
    try:
        manifest = read_manifest(parent)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    parent_config = manifest["config"]
    configs = expand_presets([StageConfig(**s) for s in parent_config["stages"]])
    names = {c.name for c in configs}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"--set names stage(s) {', '.join(unknown)} that the job does not run: "
                          f"{', '.join(sorted(names))}")
    source_input = {"type": CurateOutputSource.kind, "name": "parent", "path": str(parent),
                    "config_hash": manifest.get("config_hash"), "unit_mb": parent_config.get("unit_mb", 64)}
    config = parse_job({
        **parent_config, "name": f"{manifest.get('name')}-refilter", "output": str(output),
        "inputs": [source_input], "ray": ray or {},
        "stages": [{"name": c.name, "options": {**c.options, **overrides.get(c.name, {})}} for c in configs],
    }, "refilter")
    source = build_source(config.inputs[0], 0)
    stored = set(source.columns())
    built, deciding = [], []
    for i, c in enumerate(config.stages):
        stage = build_stage(c, i)
        built.append(stage)
        if isinstance(stage, Filter) and stage.columns() and set(stage.columns()) <= stored:
            missing = sorted(set(stage.requires()) - stored) if stage.signal_reads_columns else []
            if missing:
                raise ConfigError(f"{c.name} reads the column(s) {', '.join(missing)}, which {parent} does not hold")
            signal_options = [] if stage.signal_reads_columns else \
                sorted(set(overrides.get(c.name, {})) - stage.decision_options())
            if signal_options:
                raise ConfigError(f"{c.name}: {', '.join(signal_options)} change(s) its signal, not its decision: "
                                  f"refilter decides over stored scores only (it can set "
                                  f"{', '.join(sorted(stage.decision_options()))}); curate again to change a signal")
            deciding.append(DecideOnly(stage))
        elif c.name in overrides:
            raise ConfigError(f"{c.name}: no stored columns to decide over (it is not a filter with signals)")
    # the output holds what every stage of the parent declared (redaction's tallies, dedupe's
    # reasons), with the thresholds now in force
    declarations = declared(built)
    extra = {
        "thresholds": declarations.pop("thresholds"), "declared": declarations,
        "derived_from": {"output": str(parent), "name": manifest.get("name"), "config_hash": manifest.get("config_hash"),
                         "overrides": overrides, "decided_by": [s.name for s in deciding], "scores_recomputed": False},
    }
    return Job(config, [source], deciding, output.absolute(), manifest_extra=extra)


def refilter(parent: str | Path, output: str | Path, overrides: dict[str, dict], overwrite: bool = False,
             ray: dict | None = None, progress: bool = False) -> dict:
    job = build_refilter(parent, output, overrides, ray)
    return Runner(job, Progress(enabled=progress)).run(overwrite=overwrite)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a finished curate output (holding manifest.json)")
    parser.add_argument("--set", nargs="+", default=[], metavar="STAGE.OPTION=VALUE",
                        help="new option values, e.g. gopher_quality.min_words=100 (YAML values: null disables)")
    parser.add_argument("--output", "-o", required=True, help="folder for the re-decided output")
    parser.add_argument("--address", help="Ray cluster address (`auto`, `ray://host:10001`); default: embedded Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the output folder holds and start over")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")


def run_from_args(args: argparse.Namespace) -> int:
    from jobs.curate import stage_failure

    ray = {k: v for k, v in (("address", args.address), ("num_cpus", args.num_cpus)) if v is not None}
    try:
        manifest = refilter(args.dir, args.output, parse_sets(args.set), args.overwrite, ray, progress=not args.quiet)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        failure = stage_failure(exc)
        if not failure:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return 4
    print(json.dumps(manifest["totals"], indent=1))
    return 0 if manifest["totals"]["balanced"] else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("refilter", help="re-apply thresholds to stored scores, without recomputing them",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
