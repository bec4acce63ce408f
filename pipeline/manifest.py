"""`manifest.json`: the resolved job, its hash, the code and schema versions, per-stage counts,
per-reason drops, the ledger balance, what global stages report of their decisions, and every
file written with its rows and checksum."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from pipeline.config import JobConfig
from pipeline.counts import RunCounts
from pipeline.schema import SCHEMA_VERSION
from pipeline.segment import INGEST
from pipeline.stage import Filter


def code_version() -> str:
    try:
        version = importlib.metadata.version("sigma-lm")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|credential|auth", re.I)
URL_PASSWORD = re.compile(r"(?<=://)([^/:@\s]+):([^/@\s]+)@")


def scrub_secrets(value, key: str = ""):
    """The job config as the manifest keeps it: values under secret-looking keys, and passwords in
    URLs, replaced, so a manifest can be shared without leaking what the job was given."""
    if isinstance(value, dict):
        return {k: scrub_secrets(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_secrets(v, key) for v in value]
    if isinstance(value, str):
        if SECRET_KEY.search(key) and value:
            return "<redacted>"
        return URL_PASSWORD.sub(r"\1:<redacted>@", value)
    return value


def balance(counts: RunCounts, kept_rows: int, ledger_rows: int) -> dict:
    dropped = Counter()
    for c in counts.values():
        dropped.update(c.dropped)
    total_dropped = sum(dropped.values())
    inputs = counts[INGEST].docs_in if INGEST in counts else 0
    return {
        "input": inputs, "kept": kept_rows, "dropped": total_dropped,
        "dropped_by_reason": dict(dropped.most_common()), "ledger_rows": ledger_rows,
        "balanced": inputs == kept_rows + total_dropped and ledger_rows == total_dropped,
    }


def declared(stages) -> dict:
    """What the job's stages declare (pipeline.stage.Declared): every filter's active thresholds,
    the score columns to draw, the drop reasons and the tallied columns. Statistics, the report
    and inspection read these, never a stage's vocabulary."""
    return {
        "thresholds": [{"stage": s.name, **t} for s in stages if isinstance(s, Filter) for t in s.thresholds()],
        "scores": [{"stage": s.name, "column": sc.column, "high": sc.high} for s in stages for sc in s.scores()],
        "reasons": [{"stage": s.name, "reason": r, "duplicate": r in s.duplicate_reasons}
                    for s in stages for r in s.reasons()],
        "tallies": [{"stage": s.name, "prefix": s.tally_prefix} for s in stages if s.tally_prefix],
    }


def build_manifest(config: JobConfig, segments, reports: list[list[dict]], started: float, units: int,
                   declarations: dict | None = None, stage_stats: dict | None = None) -> dict:
    counts = RunCounts()
    files, ledger, rejects = [], [], []
    for seg_reports in reports:
        for r in seg_reports:
            counts = counts + RunCounts.from_list(r["counts"])
            ledger += r["ledger"]
            rejects += r["rejects"]
    files = [f for r in reports[-1] for f in r["files"]]
    finished = time.time()
    return {
        "schema_version": SCHEMA_VERSION,
        "code_version": code_version(),
        "name": config.name,
        "config": scrub_secrets(config.model_dump(mode="json")),
        "config_hash": config.output_hash(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "seconds": round(finished - started, 2),
        "units": units,
        "unit_tasks_by_node": dict(Counter(r.get("node") or "local" for seg in reports for r in seg).most_common()),
        "stages": counts.to_list(),
        "totals": balance(counts, sum(f["rows"] for f in files), sum(f["rows"] for f in ledger)),
        "schema": [{"name": f.name, "type": str(f.type)} for f in segments[-1].schema],
        "thresholds": (declarations or {}).get("thresholds", []),
        "declared": {k: v for k, v in (declarations or {}).items() if k != "thresholds"},
        "stage_stats": stage_stats or {},
        "files": sorted(files, key=lambda f: f["path"]),
        "ledger": sorted(ledger, key=lambda f: f["path"]),
        "rejects": sorted(rejects, key=lambda f: f["path"]),
    }


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(root / "manifest.json")


def read_manifest(root: Path) -> dict:
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{root}: no manifest.json (not a finished curate output?)")
    return json.loads(path.read_text())


def output_shard_files(root: str | Path) -> list[tuple[str, int]]:
    """The shard files of a finished curate output that hold documents, as (absolute path, rows)
    in the manifest's order. ValueError when `root` is not a finished output or lacks a listed shard."""
    root = Path(root).absolute()
    try:
        manifest = read_manifest(root)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    files = [(str(root / f["path"]), f["rows"]) for f in manifest.get("files", []) if f["rows"]]
    missing = [path for path, _ in files if not Path(path).is_file()]
    if missing:
        raise ValueError(f"{root}: its manifest lists {len(missing)} shard(s) that are not there, "
                         f"the first {missing[0]}")
    return files
