"""Curated shard folders built from real text: rendered man pages and Loghub logs.

They have the layout of a curate job's output (``DIR/manifest.json``, ``DIR/shards/*.parquet``,
one row per document), written with small row groups so that shuffling and rank splitting have
units to work with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = PROJECT_ROOT / ".." / "shared" / "data"
MAN_PAGES = [
    "ls", "cp", "mv", "rm", "ln", "mkdir", "cat", "head", "tail", "less", "grep", "find", "xargs",
    "sort", "uniq", "cut", "sed", "awk", "tar", "gzip", "chmod", "chown", "ps", "kill", "top", "df",
    "du", "mount", "ssh", "ip", "ss", "systemctl", "journalctl", "useradd", "curl",
]
LOG_LINES_PER_DOCUMENT = 40


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """sigma-tiny's matrices are too small to gain from threads, and on a busy 2-core machine
    competing OpenMP threads make the suite several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """The environment for command-line runs in tests: one OpenMP thread, like the suite."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def write_curated(out: Path, rows: list[dict[str, str]], rows_per_shard: int = 200, row_group_size: int = 16) -> Path:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    files = []
    for index, start in enumerate(range(0, len(rows), rows_per_shard)):
        table = pa.Table.from_pylist(rows[start : start + rows_per_shard])
        name = f"part-{index:05d}.parquet"
        pq.write_table(table, out / "shards" / name, compression="zstd", row_group_size=row_group_size)
        files.append({"name": f"shards/{name}", "rows": table.num_rows})
    (out / "manifest.json").write_text(json.dumps({"schema_version": 1, "files": files}, indent=1))
    return out


def _row(source: str, uri: str, kind: str, text: str, **meta: object) -> dict[str, str]:
    doc_id = hashlib.sha256(f"{source}:{uri}".encode()).hexdigest()[:32]
    return {"id": doc_id, "text": text, "source": source, "uri": uri, "kind": kind, "meta": json.dumps(meta)}


@pytest.fixture(scope="session")
def curated_man(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("man") is None:
        pytest.skip("man is not installed: cannot render man pages for test shards")
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"}
    rows = []
    for page in MAN_PAGES:
        done = subprocess.run(["man", "-P", "cat", page], capture_output=True, text=True, env=env)
        if done.returncode == 0 and done.stdout.strip():
            rows.append(_row("man", f"man:{page}", "doc", done.stdout, page=page))
    if len(rows) < 10:
        pytest.skip(f"only {len(rows)} man pages render on this machine; need 10")
    return write_curated(tmp_path_factory.mktemp("curated") / "man", rows, rows_per_shard=20, row_group_size=4)


@pytest.fixture(scope="session")
def curated_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = sorted(SHARED_DATA.glob("loghub/*/*_2k.log"))
    if not logs:
        pytest.skip("../shared/data/loghub (relative to the project root) is absent: no real logs for test shards")
    rows = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines(keepends=True)
        for start in range(0, len(lines), LOG_LINES_PER_DOCUMENT):
            text = "".join(lines[start : start + LOG_LINES_PER_DOCUMENT])
            rows.append(_row("file", f"{log.parent.name}/{log.name}#L{start + 1}", "log", text, system=log.parent.name))
    return write_curated(tmp_path_factory.mktemp("curated") / "logs", rows)


@pytest.fixture(scope="session")
def tokenizer_file(curated_man: Path, curated_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sigma.tokenizer import train_on_shards

    return train_on_shards([curated_man, curated_logs], vocab_size=512, out_dir=tmp_path_factory.mktemp("tokenizer"))
