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


@pytest.fixture
def loghub() -> Path:
    return need(LOGHUB)


@pytest.fixture
def man_root() -> Path:
    return need(MAN_ROOT / "man1")


@pytest.fixture
def nl2bash() -> Path:
    return need(NL2BASH)
