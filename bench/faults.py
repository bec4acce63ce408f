"""Faults in the middle of a curate job: Ray worker processes and the driver killed (SIGKILL) in
each phase, map segments and the dedupe shuffles included. Each faulted run either completes by
itself or completes when the same command runs again; its shards and ledger must equal a clean
run's, byte for byte, and its ledger must balance.

    python bench/faults.py                       # a job of man pages and Loghub logs
    python bench/faults.py --job my-job.yaml --only kill-worker-dedupe
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

# (name, what is killed, the phase to wait for: a glob under the output that appears in it)
SCENARIOS = [
    ("kill-worker-ingest", "worker", "_work/s0/u*.json"),
    ("kill-driver-ingest", "driver", "_work/s0/u*.json"),
    ("kill-worker-exact-dedupe", "worker", "_work/g0-exact_dedupe.tmp"),
    ("kill-driver-exact-dedupe", "driver", "_work/g0-exact_dedupe.tmp"),
    ("kill-worker-near-dedupe", "worker", "_work/g1-near_dedupe.tmp"),
    ("kill-driver-near-dedupe", "driver", "_work/g1-near_dedupe.tmp"),
    ("kill-worker-write", "worker", "_work/s2/u*.json"),
    ("kill-driver-write", "driver", "_work/s2/u*.json"),
]


def default_job(tmp: Path) -> Path:
    job = {
        "name": "faults",
        "inputs": [{"type": "man", "roots": ["/usr/share/man"], "sections": ["1"], "include": ["gcloud_compute_*"],
                    "unit_pages": 150},
                   {"type": "files", "roots": [str(SHARED / "loghub")], "include": ["*_2k.log"], "unit_files": 2}],
        "stages": ["redact", "basic_filter", "exact_dedupe", "near_dedupe"],
    }
    path = tmp / "faults-job.json"
    path.write_text(json.dumps(job))
    return path


def children(pid: int) -> list[int]:
    """Every process below `pid`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        out += kids
        frontier += kids
    return out


def busy_worker(driver: int) -> int | None:
    """A Ray worker process of this job that is running a task (`ray::` and not idle)."""
    for pid in children(driver):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and not cmd.startswith(("ray::IDLE", "ray::_StatsActor", "ray::AutoscalingRequester")):
            return pid
    return None


def run(job: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobs.curate", str(job), "--output", str(out), "--quiet",
                             "--num-cpus", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def digest(out: Path) -> tuple:
    m = json.loads((out / "manifest.json").read_text())
    return [f["sha256"] for f in m["files"]], [f["sha256"] for f in m["ledger"]], m["totals"]["balanced"]


def scenario(name: str, target: str, phase: str, job: Path, out: Path, timeout: float) -> dict:
    proc = run(job, out)
    deadline, killed = time.time() + timeout, None
    while time.time() < deadline and proc.poll() is None and killed is None:
        if list(out.glob(phase)):
            if target == "driver":
                proc.send_signal(signal.SIGKILL)
                killed = proc.pid
            else:
                killed = busy_worker(proc.pid)
                if killed:
                    os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    code = proc.wait()
    for pid in children(proc.pid) if target == "driver" else []:
        try:
            os.kill(pid, signal.SIGKILL)  # the killed driver's embedded Ray
        except ProcessLookupError:
            pass
    finished_alone = code == 0
    reruns = 0
    while not (out / "manifest.json").exists() and reruns < 3:
        reruns += 1
        rerun = run(job, out)
        rerun.wait()
    return {"scenario": name, "killed": target if killed else "nothing (phase passed)", "exit": code,
            "completed_alone": finished_alone, "reruns": reruns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", help="a job file (default: man pages and Loghub, with both dedupes)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sigma-faults-"))
    job = Path(args.job) if args.job else default_job(tmp)
    started = time.perf_counter()
    clean = run(job, tmp / "clean")
    if clean.wait() != 0:
        sys.exit(f"the clean run failed: {clean.stderr.read().decode()[-2000:]}")
    print(f"clean run: {time.perf_counter() - started:.1f} s")
    reference = digest(tmp / "clean")
    rows = []
    for name, target, phase in SCENARIOS:
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        row = scenario(name, target, phase, job, tmp / name, args.timeout)
        row["seconds"] = round(time.perf_counter() - t, 1)
        done = (tmp / name / "manifest.json").exists()
        row["same_output"] = done and digest(tmp / name)[:2] == reference[:2]
        row["balanced"] = done and digest(tmp / name)[2]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| scenario | killed | completed by itself | re-runs | same shards and ledger | balanced | s |")
    print("|---|---|---|---:|---|---|---:|")
    for r in rows:
        print(f"| {r['scenario']} | {r['killed']} | {r['completed_alone']} | {r['reruns']} | {r['same_output']} | "
              f"{r['balanced']} | {r['seconds']} |")
    subprocess.run(["rm", "-rf", str(tmp)])
    sys.exit(0 if all(r["same_output"] and r["balanced"] for r in rows) else 1)


if __name__ == "__main__":
    main()
