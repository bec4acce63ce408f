"""Benchmark results as JSON lines, one row per measurement, appended and flushed the moment it is
measured, so that a run stopped at its time limit (or by a fault in its GPU context) keeps every
row it finished. A row that failed is a row too: ``{"error": ...}`` says what, and the run goes on.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path


class RowLog:
    def __init__(self, path: Path | None, part: str, echo: bool = True):
        self.path, self.part, self.echo = path, part, echo
        self.started = time.perf_counter()
        self.rows: list[dict] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **fields) -> dict:
        row = {"kind": kind, "part": self.part, "pid": os.getpid(), "t_s": round(time.perf_counter() - self.started, 2), **fields}
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.echo:
            print("row " + json.dumps(row), flush=True)
        return row

    @contextmanager
    def guard(self, kind: str, **fields):
        """Run a measurement; if it raises, record ``kind`` with the error and carry on. CUDA faults
        that poison the context make every later row fail too; the suite runs each part in its own
        process for that reason."""
        started = time.perf_counter()
        try:
            yield
        except Exception as error:  # noqa: BLE001 - recorded, and the run goes on
            if isinstance(error, KeyboardInterrupt):
                raise
            self.write(kind, **fields, error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300],
                       wall_s=round(time.perf_counter() - started, 2))


def read_rows(path: Path) -> list[dict]:
    """Every row of a JSON-lines file; a line cut short by a kill is skipped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
