"""SQL over a curate output's Parquet files with DuckDB: shards, ledger and rejects as views."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.manifest import read_manifest

DOTTED = re.compile(r'(?<![\w."])([A-Za-z_]\w*(?:\.\w+)+)(?![\w"(])')


def connect(root: str | Path):
    """A DuckDB connection with views `shards`, `ledger` and `rejects` over the output's files."""
    import duckdb

    root = Path(root)
    manifest = read_manifest(root)
    con = duckdb.connect()
    for view, key in (("shards", "files"), ("ledger", "ledger"), ("rejects", "rejects")):
        files = [str(root / r["path"]) for r in manifest.get(key, [])]
        if files:
            con.execute(f"create view {view} as select * from read_parquet({files!r}, union_by_name=true)")
        else:
            con.execute(f"create view {view} as select null::varchar as id, null::varchar as text where false")
    return con


def columns(con, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"describe {view}").fetchall()]


def quote_columns(expression: str, names: list[str]) -> str:
    """Let users write `quality.score < 0.2`: dotted column names become quoted identifiers."""
    known = set(names)
    return DOTTED.sub(lambda m: f'"{m.group(1)}"' if m.group(1) in known else m.group(1), expression)


def records(con, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
