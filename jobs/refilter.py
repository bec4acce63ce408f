"""`sigma refilter`: apply new thresholds to a finished curate output without recomputing a score.

Every filter stores its signals as columns in the shards, and its decision reads only those
columns. `refilter` rebuilds the job's filters with the options given by `--set`, runs only their
`decide` over the stored shards, and writes a new output: the rows still kept, a ledger of the
rows the new thresholds drop (stage, reason, detail), and a manifest that balances against the
parent's kept rows and names the parent and the overrides. Stages without a decision over stored
columns (redaction, dedupe) are not re-run: their effect is already in the shards.

A threshold can only be tightened this way: rows the first run dropped are not in the shards.
To explore looser thresholds, run the job once with the filters' thresholds off (`null`), which
keeps every row with its scores, then refilter as often as needed.

    sigma refilter out/run --set gopher_quality.min_words=100 language_filter.min_score=0.5 --output out/run-strict
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from pipeline.config import ConfigError, StageConfig
from pipeline.ledger import LedgerWriter
from pipeline.manifest import code_version, read_manifest, write_manifest
from pipeline.shards import ShardWriter
from pipeline.stage import Filter, split_dropped
from stages.presets import expand_presets
from stages.registry import build_stage


def _text_bytes(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 0
    return int(pc.sum(pc.binary_length(table["text"].cast(pa.large_binary()))).as_py() or 0)


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


def refilter(parent: str | Path, output: str | Path, overrides: dict[str, dict], overwrite: bool = False) -> dict:
    parent, output = Path(parent), Path(output)
    started = time.time()
    manifest = read_manifest(parent)
    configs = expand_presets([StageConfig(**s) for s in manifest["config"]["stages"]])
    names = {c.name for c in configs}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"--set names stage(s) {', '.join(unknown)} that the job does not run: "
                          f"{', '.join(sorted(names))}")
    columns = set(pq.read_schema(parent / manifest["files"][0]["path"]).names) if manifest["files"] else set()
    filters: list[Filter] = []
    for i, c in enumerate(configs):
        config = c.model_copy(update={"options": {**c.options, **overrides.get(c.name, {})}})
        stage = build_stage(config, i)
        if isinstance(stage, Filter) and stage.columns() and set(stage.columns()) <= columns:
            filters.append(stage)
        elif c.name in overrides:
            raise ConfigError(f"{c.name}: no stored columns to decide over (it is not a filter with signals)")
    if output.exists():
        if not overwrite:
            raise ConfigError(f"{output} exists: use --overwrite, or another output")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    settings = manifest["config"].get("writer", {})
    schema = pq.read_schema(parent / manifest["files"][0]["path"]) if manifest["files"] else pa.schema([])
    shards = ShardWriter(output, "shards", "part-00000", schema, settings.get("shard_max_rows", 1_000_000))
    ledger = LedgerWriter(output, "refilter", settings.get("rejects", "all"), settings.get("rejects_rate", 1.0))
    inputs, kept = 0, 0
    dropped: dict[str, dict[str, int]] = {f.name: {} for f in filters}
    flow = {f.name: [0, 0, 0, 0] for f in filters}  # docs in, docs out, bytes in, bytes out
    for record in manifest["files"]:
        for rb in pq.ParquetFile(parent / record["path"]).iter_batches(batch_size=8192):
            batch = pa.Table.from_batches([rb])
            inputs += batch.num_rows
            for f in filters:
                reasons, details = f.decide(batch)
                result = split_dropped(batch, reasons, details)
                flow[f.name][0] += batch.num_rows
                flow[f.name][1] += result.kept.num_rows
                flow[f.name][2] += _text_bytes(batch)
                flow[f.name][3] += _text_bytes(result.kept)
                if result.dropped is not None:
                    ledger.write(f.name, result.dropped)
                    for r in result.dropped["reason"].to_pylist():
                        dropped[f.name][r] = dropped[f.name].get(r, 0) + 1
                batch = result.kept
            kept += batch.num_rows
            shards.write(batch)
    files, (ledger_files, rejects_files) = shards.close(), ledger.close()
    total_dropped = sum(sum(d.values()) for d in dropped.values())
    by_reason: dict[str, int] = {}
    for d in dropped.values():
        for r, n in d.items():
            by_reason[r] = by_reason.get(r, 0) + n
    config = dict(manifest["config"])
    config["stages"] = [{"name": c.name, "options": {**c.options, **overrides.get(c.name, {})}} for c in configs]
    out = {
        "schema_version": manifest.get("schema_version"), "code_version": code_version(),
        "name": f"{manifest.get('name')}-refilter", "config": config, "config_hash": manifest.get("config_hash"),
        "derived_from": {"output": str(parent), "config_hash": manifest.get("config_hash"), "overrides": overrides,
                         "decided_by": [f.name for f in filters], "scores_recomputed": False},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 2), "units": len(manifest["files"]),
        "stages": [{"name": f.name, "docs_in": flow[f.name][0], "docs_out": flow[f.name][1],
                    "bytes_in": flow[f.name][2], "bytes_out": flow[f.name][3], "dropped": dropped[f.name]}
                   for f in filters],
        "totals": {"input": inputs, "kept": kept, "dropped": total_dropped, "dropped_by_reason": by_reason,
                   "ledger_rows": sum(f.rows for f in ledger_files),
                   "balanced": inputs == kept + total_dropped and sum(f.rows for f in ledger_files) == total_dropped},
        "schema": manifest.get("schema"),
        "files": [f.to_dict() for f in files], "ledger": [f.to_dict() for f in ledger_files],
        "rejects": [f.to_dict() for f in rejects_files],
    }
    write_manifest(output, out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a finished curate output (holding manifest.json)")
    parser.add_argument("--set", nargs="+", default=[], metavar="STAGE.OPTION=VALUE",
                        help="new option values, e.g. gopher_quality.min_words=100 (YAML values: null disables)")
    parser.add_argument("--output", "-o", required=True, help="folder for the re-decided output")
    parser.add_argument("--overwrite", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    try:
        manifest = refilter(args.dir, args.output, parse_sets(args.set), args.overwrite)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(manifest["totals"], indent=1))
    return 0 if manifest["totals"]["balanced"] else 1


def register(subparsers) -> None:
    parser = subparsers.add_parser("refilter", help="re-apply thresholds to stored scores, without recomputing them",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
