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

NEAR_STEPS = tuple(f"ray::{step}" for step in ("explode", "bucket_pairs", "attach_other", "verify", "large_star",
                                               "small_star", "members", "member_attrs", "keepers"))

# (name, what is killed, the phase to wait for: a glob under the output that appears in it, and for
# a worker the task to kill: its process title's start; None: any task but a listing of files)
SCENARIOS = [
    ("kill-worker-ingest", "worker", "_work/s0/u*.json", "ray::MapBatches"),
    ("kill-driver-ingest", "driver", "_work/s0/u*.json", None),
    ("kill-worker-exact-dedupe", "worker", "_work/g0-exact_dedupe.tmp", "ray::HashShuffle"),  # the groupby
    ("kill-driver-exact-dedupe", "driver", "_work/g0-exact_dedupe.tmp", None),
    ("kill-worker-near-dedupe", "worker", "_work/g1-near_dedupe.tmp", NEAR_STEPS),  # a step of the exchange
    ("kill-driver-near-dedupe", "driver", "_work/g1-near_dedupe.tmp", None),
    ("kill-worker-write", "worker", "_work/s2/u*.json", "ray::MapBatches"),
    ("kill-driver-write", "driver", "_work/s2/u*.json", None),
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


# `ray::` processes that are not task workers: idle workers, Ray Data's bookkeeping actors, and the
# node's agents (the raylet shares their fate: killing one takes the node down, not a worker)
NOT_WORKERS = ("ray::IDLE", "ray::_StatsActor", "ray::_AutoscalingCoordinatorActor", "ray::AutoscalingRequester",
               "ray::DashboardAgent", "ray::RuntimeEnvAgent")


def busy_worker(driver: int, task: str | tuple[str, ...] | None) -> int | None:
    """A Ray worker process of this job running `task` (or any task but a file listing)."""
    for pid in children(driver):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        wanted = cmd.startswith(task) if task else (
            cmd.startswith("ray::") and not cmd.startswith(NOT_WORKERS + ("ray::ListFiles",)))
        if wanted:
            return pid
    return None


def run(job: Path, out: Path) -> subprocess.Popen:
    log = open(out.with_name(out.name + ".log"), "ab")
    return subprocess.Popen([sys.executable, "-m", "jobs.curate", str(job), "--output", str(out), "--quiet",
                             "--num-cpus", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)


def last_error(out: Path) -> str:
    """The last line of a run's log that names an error: why a faulted run stopped."""
    path = out.with_name(out.name + ".log")
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if "Error" in ln] if path.exists() else []
    return lines[-1].strip()[:160] if lines else ""


def digest(out: Path) -> tuple:
    m = json.loads((out / "manifest.json").read_text())
    return [f["sha256"] for f in m["files"]], [f["sha256"] for f in m["ledger"]], m["totals"]["balanced"]


def scenario(scenario_name: str, target: str, phase: str, task: str | tuple[str, ...] | None, job: Path,
             out: Path, timeout: float) -> dict:
    proc = run(job, out)
    deadline, killed, name = time.time() + timeout, None, "driver"
    while time.time() < deadline and proc.poll() is None and killed is None:
        if list(out.glob(phase)):
            if target == "driver":
                proc.send_signal(signal.SIGKILL)
                killed = proc.pid
            else:
                killed = busy_worker(proc.pid, task)
                if killed:
                    name = Path(f"/proc/{killed}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
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
    return {"scenario": scenario_name, "killed": name if killed else "nothing (phase passed)", "exit": code,
            "completed_alone": finished_alone, "reruns": reruns, "error": "" if finished_alone else last_error(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", help="a job file (default: man pages and Loghub, with both dedupes)")
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep", action="store_true", help="keep the outputs and logs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sigma-faults-"))
    job = Path(args.job) if args.job else default_job(tmp)
    started = time.perf_counter()
    clean = run(job, tmp / "clean")
    if clean.wait() != 0:
        sys.exit(f"the clean run failed: see {tmp / 'clean.log'}")
    print(f"clean run: {time.perf_counter() - started:.1f} s")
    reference = digest(tmp / "clean")
    rows = []
    for name, target, phase, task in SCENARIOS:
        if args.only and name not in args.only:
            continue
        t = time.perf_counter()
        row = scenario(name, target, phase, task, job, tmp / name, args.timeout)
        row["seconds"] = round(time.perf_counter() - t, 1)
        done = (tmp / name / "manifest.json").exists()
        row["same_output"] = done and digest(tmp / name)[:2] == reference[:2]
        row["balanced"] = done and digest(tmp / name)[2]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| scenario | killed | completed by itself | re-runs | same shards and ledger | balanced | s | why it stopped |")
    print("|---|---|---|---:|---|---|---:|---|")
    for r in rows:
        print(f"| {r['scenario']} | {r['killed']} | {r['completed_alone']} | {r['reruns']} | {r['same_output']} | "
              f"{r['balanced']} | {r['seconds']} | {r['error']} |")
    if args.keep:
        print(f"outputs and logs: {tmp}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)])
    sys.exit(0 if all(r["same_output"] and r["balanced"] for r in rows) else 1)


if __name__ == "__main__":
    main()
