"""A real two-node Ray cluster on one machine: `ray start --head` and a second `ray start
--address` (separate processes, each with its own object store), the curate job submitted with
`ray job submit`, and its output compared with the same job on an embedded single-node Ray.

    python bench/cluster.py                      # the default job, local-system
    python bench/cluster.py --job my-job.yaml --cpus-per-node 1

Both nodes read the inputs and write the output on this machine's filesystem, the shared path.
The cluster's processes are stopped at the end (only this cluster's: it does not run `ray stop`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def node_ports(workers_from: int) -> list[str]:
    """Every port a node opens, chosen free, so two nodes on one host do not collide; worker ports
    below the kernel's ephemeral range, where the free ones come from."""
    p = free_ports(6)
    low = workers_from
    return ["--node-manager-port", str(p[0]), "--object-manager-port", str(p[1]),
            "--dashboard-agent-listen-port", str(p[2]), "--dashboard-agent-grpc-port", str(p[3]),
            "--runtime-env-agent-port", str(p[4]), "--metrics-export-port", str(p[5]),
            "--min-worker-port", str(low), "--max-worker-port", str(low + 4999)]


def start_cluster(tmp: Path, cpus: int, env: dict) -> tuple[str, str]:
    gcs, dashboard, client = free_ports(3)
    common = ["--num-cpus", str(cpus), "--temp-dir", str(tmp / "ray"), "--disable-usage-stats",
              "--object-store-memory", str(1 << 30)]
    subprocess.run([RAY, "start", "--head", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
                    *node_ports(10002), *common], check=True, env=env)
    subprocess.run([RAY, "start", "--address", f"127.0.0.1:{gcs}", *node_ports(15002), *common], check=True,
                   env=env)
    return f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}"


def wait_for_nodes(address: str, n: int, env: dict, timeout: float = 120) -> None:
    code = f"import ray; ray.init(address='{address}', logging_level='ERROR'); " \
           "print(sum(1 for node in ray.nodes() if node['Alive']))"
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    raise RuntimeError(f"the cluster at {address} did not reach {n} nodes")


def stop_cluster(tmp: Path) -> None:
    """Stop the processes of this cluster only: those whose command line names its temp dir."""
    marker = str(tmp / "ray")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def submit(api: str, job: str, output: Path, env: dict) -> float:
    runtime_env = json.dumps({"working_dir": str(ROOT), "excludes": [".venv", "out", ".git", "*.parquet"]})
    started = time.perf_counter()
    subprocess.run([RAY, "job", "submit", "--address", api, "--runtime-env-json", runtime_env, "--",
                    sys.executable, "-m", "jobs.curate", job, "--output", str(output), "--address", "auto", "--quiet"],
                   check=True, env=env)
    return time.perf_counter() - started


def single_node(job: str, output: Path, cpus: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.curate", job, "--output", str(output), "--quiet",
                    "--num-cpus", str(cpus)], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="local-system", help="job file or name in configs/")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the outputs (printed at the end)")
    args = parser.parse_args()
    job = str(Path(args.job).absolute()) if os.path.exists(args.job) else args.job  # a name: jobs.curate finds it
    tmp = Path(tempfile.mkdtemp(prefix="sigma-cluster-"))
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "PYTHONPATH": str(ROOT)}
    try:
        address, api = start_cluster(tmp, args.cpus_per_node, env)
        wait_for_nodes(address, 2, env)
        cluster_s = submit(api, job, tmp / "cluster", env)
    finally:
        stop_cluster(tmp)
    single_s = single_node(job, tmp / "single", 2 * args.cpus_per_node)
    a = json.loads((tmp / "single" / "manifest.json").read_text())
    b = json.loads((tmp / "cluster" / "manifest.json").read_text())
    same = ([f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]
            and [f["sha256"] for f in a["ledger"]] == [f["sha256"] for f in b["ledger"]])
    print(f"\njob {a['name']}: {a['totals']['input']:,} inputs, {a['totals']['kept']:,} kept")
    print("| run | nodes | wall s | kept | dropped | balanced | unit tasks by node |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, m, seconds in (("embedded Ray, one node", a, single_s), ("ray job submit, two nodes", b, cluster_s)):
        nodes = m["unit_tasks_by_node"]
        print(f"| {name} | {len(nodes)} | {seconds:,.1f} | {m['totals']['kept']:,} | {m['totals']['dropped']:,} | "
              f"{m['totals']['balanced']} | {', '.join(str(v) for v in nodes.values())} |")
    print(f"shards and ledger identical (sha256): {same}")
    if args.keep:
        print(f"outputs: {tmp}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)])
    sys.exit(0 if same and len(b["unit_tasks_by_node"]) == 2 else 1)


if __name__ == "__main__":
    main()
