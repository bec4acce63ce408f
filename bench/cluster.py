"""A real two-node Ray cluster on one machine: `ray start --head` and a second `ray start
--address` (separate processes, each with its own object store), the curate job submitted with
`ray job submit`, and its output compared with the same job on an embedded single-node Ray.
Then training on what the cluster curated: `sigma train --ray` submitted with `ray job submit`,
two Ray Train workers (gloo, one per node), against the same command on an embedded one-node Ray;
the per-step losses must be equal.

    python bench/cluster.py                      # the default job, local-system
    python bench/cluster.py --job my-job.yaml --cpus-per-node 1 --train-steps 40

Both nodes read the inputs and write the output on this machine's filesystem, the shared path.
The cluster's processes are stopped at the end (only this cluster's: it does not run `ray stop`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
SIGMA = str(Path(sys.executable).with_name("sigma"))


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


def submit(api: str, entrypoint: list[str], env: dict) -> tuple[float, str]:
    """`ray job submit -- ENTRYPOINT` with this project as its working dir; seconds and its output."""
    runtime_env = json.dumps({"working_dir": str(ROOT), "excludes": [".venv", "out", ".git", "*.parquet"]})
    started = time.perf_counter()
    run = subprocess.run([RAY, "job", "submit", "--address", api, "--runtime-env-json", runtime_env, "--", *entrypoint],
                         env=env, stdout=subprocess.PIPE, text=True)
    print(run.stdout, end="")
    run.check_returncode()
    return time.perf_counter() - started, run.stdout


def curate(job: str, output: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.curate", job, "--output", str(output), "--quiet"]


def train(data: Path, out: Path, steps: int) -> list[str]:
    """sigma-tiny on two CPU workers, one rank each."""
    return [SIGMA, "train", "sigma-tiny", "--data", str(data), "--out", str(out),
            "--steps", str(steps), "--seq-len", "64", "--batch-size", "4", "--warmup-steps", "5",
            "--log-every", "1", "--eval-every", str(steps), "--save-every", str(steps), "--ray", "--workers", "2",
            "--cpus-per-worker", "1"]


def single_node(entrypoint: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(entrypoint, check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - started, run.stdout


def losses(run: Path) -> list[tuple[int, float]]:
    from sigma.metrics import read_metrics

    return [(m["step"], m["loss"]) for m in read_metrics(run) if "loss" in m]


def nodes_used(output: str) -> int:
    """The node count of `sigma train --ray`'s placement line, `Ray Train: 2 workers (cpu) on 2 nodes`."""
    found = re.search(r"Ray Train: \d+ workers \(.*?\) on (\d+) node", output)
    return int(found.group(1)) if found else 0


def compare_training(single: tuple[float, str], cluster: tuple[float, str], tmp: Path) -> bool:
    a, b = losses(tmp / "train-single"), losses(tmp / "train-cluster")
    same_steps = [s for s, _ in a] == [s for s, _ in b] and len(a) > 0
    difference = max((abs(x - y) for (_, x), (_, y) in zip(a, b)), default=float("nan"))
    print(f"\nsigma-tiny, {len(a)} steps on what the cluster curated, two Ray Train workers (gloo)")
    print("| run | nodes | wall s | first loss | last loss |")
    print("|---|---:|---:|---:|---:|")
    for name, (seconds, output), run in (("embedded Ray, one node", single, a), ("ray job submit, two nodes", cluster, b)):
        print(f"| {name} | {nodes_used(output)} | {seconds:,.1f} | {run[0][1]:.5f} | {run[-1][1]:.5f} |")
    equal = same_steps and difference <= 1e-5
    print(f"per-step losses equal (largest difference {difference:.2g}): {equal}")
    return equal and nodes_used(cluster[1]) == 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="local-system", help="job file or name in configs/")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=20, help="steps of the training runs (0: no training)")
    parser.add_argument("--keep", action="store_true", help="keep the outputs (printed at the end)")
    args = parser.parse_args()
    job = str(Path(args.job).absolute()) if os.path.exists(args.job) else args.job  # a name: jobs.curate finds it
    tmp = Path(tempfile.mkdtemp(prefix="sigma-cluster-"))
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "PYTHONPATH": str(ROOT)}
    trained = None
    try:
        address, api = start_cluster(tmp, args.cpus_per_node, env)
        wait_for_nodes(address, 2, env)
        cluster_s, _ = submit(api, [*curate(job, tmp / "cluster"), "--address", "auto"], env)
        if args.train_steps:
            subprocess.run([SIGMA, "tokenizer", "train", "--data", str(tmp / "cluster"), "--vocab-size", "512"],
                           check=True, cwd=ROOT)
            trained = submit(api, train(tmp / "cluster", tmp / "train-cluster", args.train_steps), env)
    finally:
        stop_cluster(tmp)
    single_s, _ = single_node([*curate(job, tmp / "single"), "--num-cpus", str(2 * args.cpus_per_node)])
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
    trains_alike = True
    if trained is not None:
        single_train = single_node(train(tmp / "cluster", tmp / "train-single", args.train_steps))
        trains_alike = compare_training(single_train, trained, tmp)
    if args.keep:
        print(f"outputs: {tmp}")
    else:
        subprocess.run(["rm", "-rf", str(tmp)])
    sys.exit(0 if same and len(b["unit_tasks_by_node"]) == 2 and trains_alike else 1)


if __name__ == "__main__":
    main()
