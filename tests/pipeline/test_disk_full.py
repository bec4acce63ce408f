"""A full output disk stops the job with a clear error, and leaves no shard a reader would see."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and tmpfs mounts to make a small disk")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_disk_full_is_a_clear_error_and_leaves_no_partial_shard(small_disk, loghub):
    out = small_disk / "out"
    r = subprocess.run([sys.executable, "-m", "jobs.sigma_command", "curate", "--input", str(loghub), "--output", str(out),
                        "--quiet", "--num-cpus", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "no space left on the output device" in r.stderr and "resumes" in r.stderr
    assert not (out / "manifest.json").exists()
    for path in out.rglob("*.parquet"):  # whatever a reader can see is a whole Parquet file
        pq.ParquetFile(path).metadata
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
