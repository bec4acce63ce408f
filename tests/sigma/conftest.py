"""Curated shard folders made by the curate job itself from real text: rendered man pages and
Loghub logs, written with small row groups so that shuffling and rank splitting have units to
work with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

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
VLLM_SERVE_TIMEOUT_S = 900  # start-up compiles the model for the CPU: minutes on two cores


@contextlib.contextmanager
def _vllm_server(folder, name: str, args: list[str], log: Path, env: dict[str, str]):
    """`vllm serve FOLDER` (its OpenAI-compatible server) on a free port of 127.0.0.1 until the
    block ends; yields its URL once it lists the model."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                                 "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + VLLM_SERVE_TIMEOUT_S
    try:
        while True:
            assert proc.poll() is None, f"vllm serve exited: {log.read_text()[-3000:]}"
            assert time.time() < deadline, f"vllm serve not up in {VLLM_SERVE_TIMEOUT_S} s: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as r:
                    if json.loads(r.read())["data"]:
                        break
            except OSError:
                time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def vllm_server():
    """Starts `vllm serve` for a test: `with vllm_server(folder, name, args, log, env) as url:`."""
    return _vllm_server


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


def torchrun_train(args: list[str], out: Path, env: dict[str, str]) -> None:
    """`torchrun --standalone --nproc-per-node 2 sigma train ARGS` (ARGS hold `--out OUT`): two gloo ranks.

    A finished run's rank could abort at exit ("terminate called without an active exception", in
    about one launch of 30 on a loaded machine) while gloo's threads still ran: the process group
    is now left at the end of a run (sigma.train.distributed_run). Should a launch still fail, it is
    made once more (a new run from an empty folder, a resumed one from its last checkpoint) with its
    stderr in the warnings summary, and a lasting fault fails the test.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "sigma.model_commands", "train", *args]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    if done.returncode:
        warnings.warn(f"torchrun exited {done.returncode}, started again; its stderr ended:\n{done.stderr[-3000:]}")
        if "--resume" not in args:
            shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def curate_rows(out: Path, job: dict) -> Path:
    """Run the real curate job (embedded Ray, real Parquet) into `out`."""
    from jobs.curate import curate
    from pipeline.config import parse_job

    manifest = curate(parse_job(job), str(out))
    assert manifest["totals"]["balanced"]
    return out


@pytest.fixture(scope="session")
def curated_man(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    """Real man pages through the spine's curate job, in small row groups so that shuffling and
    rank splitting have units to work with."""
    if shutil.which("groff") is None or not Path("/usr/share/man/man1").is_dir():
        pytest.skip("groff or /usr/share/man is missing: cannot render man pages for test shards")
    job = {"inputs": [{"type": "man", "roots": ["/usr/share/man"], "include": MAN_PAGES, "sections": ["1", "8"]}],
           "stages": ["basic_filter", "exact_dedupe"], "writer": {"row_group_rows": 4, "shard_max_rows": 20}}
    out = curate_rows(tmp_path_factory.mktemp("curated") / "man", job)
    if len(pq.read_table(out / "shards", columns=["id"])) < 10:
        pytest.skip("fewer than 10 of the test's man pages are installed here")
    return out


@pytest.fixture(scope="session")
def curated_logs(tmp_path_factory: pytest.TempPathFactory, ray_local) -> Path:
    """Loghub logs cut into 40-line documents, through the curate job."""
    logs = sorted(SHARED_DATA.glob("loghub/*/*_2k.log"))
    if not logs:
        pytest.skip("../shared/data/loghub (relative to the project root) is absent: no real logs for test shards")
    base = tmp_path_factory.mktemp("curated")
    with open(base / "logs.jsonl", "w") as f:
        for log in logs:
            lines = log.read_text(errors="replace").splitlines(keepends=True)
            for start in range(0, len(lines), LOG_LINES_PER_DOCUMENT):
                text = "".join(lines[start : start + LOG_LINES_PER_DOCUMENT])
                f.write(json.dumps({"id": f"{log.parent.name}-L{start + 1}", "text": text, "kind": "log", "source": "file", "system": log.parent.name,
                                    "uri": f"{log.parent.name}/{log.name}#L{start + 1}"}) + "\n")
    job = {"inputs": [{"type": "jsonl", "paths": [str(base / "logs.jsonl")]}],
           "stages": ["basic_filter", "exact_dedupe"], "writer": {"row_group_rows": 16, "shard_max_rows": 200}}
    return curate_rows(base / "logs", job)


@pytest.fixture(scope="session")
def tokenizer_file(curated_man: Path, curated_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sigma.tokenizer import train_on_shards

    return train_on_shards([curated_man, curated_logs], vocab_size=512, out_dir=tmp_path_factory.mktemp("tokenizer"))


def write_small_corpus(folder: Path, ids: list[str], row_group_rows: int = 1000) -> Path:
    """A shard folder of a few real documents (sections of this project's docs/flywheel.md), one
    per id, written as Parquet directly: the small curated outputs that a first try on a small
    folder, a hard filter or a round that dedupes most of its input leave."""
    import pyarrow as pa

    sections = (PROJECT_ROOT / "docs" / "flywheel.md").read_text().split("\n## ")
    texts = [sections[i % len(sections)] for i in range(len(ids))]
    table = pa.table({"id": ids, "text": texts, "source": ["file"] * len(ids), "kind": ["doc"] * len(ids)})
    (folder / "shards").mkdir(parents=True)
    pq.write_table(table, folder / "shards" / "part-00000.parquet", row_group_size=row_group_rows)
    return folder
