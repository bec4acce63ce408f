"""Check a curate output against its manifest: every file present, the same size, rows and sha256."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.manifest import read_manifest
from pipeline.shards import sha256_file


def verify_output(root: str | Path) -> list[str]:
    """Problems found (empty when the output is intact)."""
    root = Path(root)
    manifest = read_manifest(root)
    problems = []
    for group in ("files", "ledger", "rejects"):
        for record in manifest.get(group, []):
            path = root / record["path"]
            if not path.exists():
                problems.append(f"{record['path']}: missing")
                continue
            if path.stat().st_size != record["bytes"]:
                problems.append(f"{record['path']}: {path.stat().st_size} bytes, the manifest says {record['bytes']}")
            elif sha256_file(path) != record["sha256"]:
                problems.append(f"{record['path']}: checksum differs from the manifest (changed or corrupt)")
            else:
                rows = pq.ParquetFile(path).metadata.num_rows
                if rows != record["rows"]:
                    problems.append(f"{record['path']}: {rows} rows, the manifest says {record['rows']}")
    listed = {r["path"] for g in ("files", "ledger", "rejects") for r in manifest.get(g, [])}
    for directory in ("shards", "ledger", "rejects"):
        for path in sorted((root / directory).glob("*.parquet")) if (root / directory).is_dir() else []:
            if str(path.relative_to(root)) not in listed:
                problems.append(f"{path.relative_to(root)}: not in the manifest")
    if not manifest["totals"]["balanced"]:
        problems.append("the ledger does not balance: input != kept + dropped")
    return problems
