"""Near-dedupe benchmark: this project's stage beside datatrove, datasketch and rensa, on the same
corpus with the same parameters, in one run.

    python bench/dedupe.py compare [--repeat 3]    # the table with ratios to the peers
    python bench/dedupe.py scale --sizes 10000 100000 1000000
    python bench/dedupe.py ours --input JSONL_DIR [--verify jaccard] ...   # one measured run of the stage

Corpus: the peers' harness (`../shared/peers/build_corpus.py`, run as it is) renders this machine's
man pages (with the ~16,600 `gcloud` pages), extracts `linux-doc-6.1` and cuts the loghub logs
into 50-line documents. Parameters for every tool: 128 permutations, LSH 16 bands x 8 rows, word
5-grams, seed 1; this stage with `normalise: text` (lower-cased words, the peers' rule) and
candidate verification at Jaccard 0.8 (the peers verify nothing; `verify: null` is the comparable
unverified run). Each command runs as its own process tree, sampled from /proc: wall time, CPU time
and peak memory (PSS summed over the tree; the largest single process's RSS).

The peers run in their own virtual environments (`--peer-venvs`, holding `peer_datatrove`,
`peer_datasketch`, `peer_rensa`), created with pip as `../shared/peers/README.md` says.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
TMP = Path(tempfile.gettempdir())
PARITY = {"ngram": 5, "normalise": "text", "threshold": 0.8, "bands": 16, "rows": 8, "num_perm": 128, "seed": 1}


# -- measuring a process tree --------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(pid))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _tree(root: int) -> list[int]:
    kids, out, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += kids.get(pid, [])
    return out


def _field_kb(pid: int, name: str, file: str) -> int:
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        return "?"


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def measure(cmd: list[str], env: dict | None = None, log: Path | None = None) -> dict:
    """Run a command; sample its process tree every 0.1 s (PSS every 0.5 s)."""
    start = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=out, env={**os.environ, **(env or {})}, text=True)
    peak = {"pss": 0, "rss": 0, "proc_pss": 0, "proc": "", "uss": 0, "anon": 0, "anon_proc": ""}
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample():
        last_pss = 0.0
        while not done.is_set():
            pids = _tree(proc.pid)
            for pid in pids:
                cpu[pid] = max(cpu.get(pid, 0.0), _cpu_s(pid))
                peak["rss"] = max(peak["rss"], _field_kb(pid, "VmRSS:", "status"))
                anon = _field_kb(pid, "RssAnon:", "status")  # heap and stacks: not the object store's shared pages
                if anon > peak["anon"]:
                    peak["anon"], peak["anon_proc"] = anon, _name(pid)
            if time.perf_counter() - last_pss >= 0.5:
                pss = {p: _field_kb(p, "Pss:", "smaps_rollup") for p in pids}
                peak["pss"] = max(peak["pss"], sum(pss.values()))
                top = max(pss, key=pss.get)
                if pss[top] > peak["proc_pss"]:
                    peak["proc_pss"], peak["proc"] = pss[top], _name(top)
                peak["uss"] = max([peak["uss"]] + [_field_kb(p, "Private_Clean:", "smaps_rollup")
                                                   + _field_kb(p, "Private_Dirty:", "smaps_rollup") for p in pids])
                last_pss = time.perf_counter()
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, _ = proc.communicate()
    done.set()
    thread.join()
    if log:
        out.close()
        with open(log, "a") as f:
            f.write(stdout)
    result = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
    return {"cmd": " ".join(cmd), "rc": proc.returncode, "wall_s": time.perf_counter() - start,
            "cpu_s": sum(cpu.values()), "tree_pss_mb": peak["pss"] / 1024, "max_proc_rss_mb": peak["rss"] / 1024,
            "max_proc_pss_mb": peak["proc_pss"] / 1024, "max_proc": peak["proc"], "max_proc_uss_mb": peak["uss"] / 1024,
            "max_proc_anon_mb": peak["anon"] / 1024, "max_anon_proc": peak["anon_proc"], "result": result}


# -- this stage, measured in its own process ----------------------------------------------------------


def run_ours(args) -> int:
    """Read the JSONL shards, compute signals and decide, all as Ray tasks; print RESULT."""
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.json as pj
    import ray

    from stages.dedupe.near import NearDedupe

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_up = time.perf_counter()
    options = json.loads(args.options)
    stage = NearDedupe(**options)
    columns = ["id", "_unit", "_row", *stage.signal_columns()]
    files = sorted(glob.glob(os.path.join(args.input, "*.jsonl")))

    @ray.remote
    def signals(path: str, unit: int):
        t0 = time.process_time()
        table = pj.read_json(path, parse_options=pj.ParseOptions(
            explicit_schema=pa.schema([("id", pa.string()), ("text", pa.large_string())]),
            unexpected_field_behavior="ignore"))
        table = table.append_column("kind", pa.array([args.kind] * table.num_rows, pa.string()))
        table = table.append_column("_unit", pa.array([unit] * table.num_rows, pa.int32()))
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        out = pa.concat_tables([stage.signal(pa.Table.from_batches([b])).select(columns)
                                for b in table.to_batches(max_chunksize=4096)])
        return out, out.num_rows, time.process_time() - t0

    results = [signals.options(num_returns=3).remote(p, i) for i, p in enumerate(files)]
    rows = sum(ray.get([r[1] for r in results]))
    signal_cpu = sum(ray.get([r[2] for r in results]))
    signed = time.perf_counter()
    report = {"tool": "sigma near_dedupe", "docs": rows, "options": options, "signal_cpu_s": round(signal_cpu, 3)}
    if not args.signatures_only:
        # the stage's decision on the signal tables in the object store; inside `curate` the same
        # runs behind `decide(dataset)`, whose Ray Data wrapping the runner's own steps pay for anyway
        drops, stats = stage.decide_blocks([r[0] for r in results], rows)
        removed, keepers = 0, set()
        for ref in drops:
            t = ray.get(ref)
            removed += t.num_rows
            keepers.update(t["detail"].to_pylist())
        report.update(removed=removed, clusters=len(keepers), **stats)
    finished = time.perf_counter()
    report["phases_s"] = {"ray_start": round(ray_up - started, 3), "read_and_signal": round(signed - ray_up, 3),
                          "decide": round(finished - signed, 3), "total_in_process": round(finished - started, 3)}
    print("RESULT " + json.dumps(report), flush=True)
    ray.shutdown()
    return 0


# -- the comparison -----------------------------------------------------------------------------------


def build_corpus(args) -> Path:
    corpus = Path(args.work) / "corpus"
    if not (corpus / "manifest.json").exists():
        python = Path(args.peer_venvs) / "peer_datatrove" / "bin" / "python"  # has pyarrow for the Parquet copy
        subprocess.run([str(python), str(PEERS / "build_corpus.py"), "--bench-dir", args.work, "--procs", "2",
                        "--shards", "4"], check=True)
    return corpus


def tools(args, corpus: Path) -> dict[str, list[list[str]]]:
    venv = Path(args.peer_venvs)
    jsonl = str(corpus / "jsonl") if (corpus / "jsonl").is_dir() else str(corpus)
    me = [sys.executable, str(Path(__file__).resolve()), "ours", "--input", jsonl, "--num-cpus", str(args.num_cpus)]
    work = str(Path(args.work) / "work_datatrove")
    dt = [str(venv / "peer_datatrove" / "bin" / "python"), str(PEERS / "bench_datatrove.py")]
    ds = [str(venv / "peer_datasketch" / "bin" / "python"), str(PEERS / "bench_datasketch.py"), jsonl]
    rs = [str(venv / "peer_rensa" / "bin" / "python"), str(PEERS / "bench_rensa.py"), jsonl]
    return {
        "sigma verify=jaccard": [me + ["--options", json.dumps({**PARITY, "verify": "jaccard"})]],
        "sigma verify=signature": [me + ["--options", json.dumps({**PARITY, "verify": "signature"})]],
        "sigma unverified": [me + ["--options", json.dumps({**PARITY, "verify": None})]],
        "sigma signatures only": [me + ["--options", json.dumps({**PARITY, "verify": None}), "--signatures-only"]],
        "sigma defaults (3-grams, auto)": [me + ["--options", "{}"]],
        "sigma curate job": [[sys.executable, "-m", "jobs.curate", str(Path(args.work) / "job.yaml"),
                              "--output", str(Path(args.work) / "out_curate"), "--overwrite", "--quiet", "--json",
                              "--num-cpus", str(args.num_cpus)]],
        "datatrove 4 stages": [dt + ["--stage", s, "--input", jsonl, "--work", work, "--tasks", "2", "--workers", "2"]
                               for s in ("1", "2", "3", "4", "count")],
        "datasketch bulk": [ds + ["--mode", "bulk"]],
        "datasketch update loop": [ds + ["--mode", "update"]],
        "rensa per-doc": [rs + ["--mode", "perdoc"]],
        "rensa batch": [rs + ["--mode", "batch"]],
    }


def write_curate_job(args, corpus: Path) -> None:
    jsonl = corpus / "jsonl" if (corpus / "jsonl").is_dir() else corpus
    job = {"name": "dedupe-bench", "inputs": [{"type": "jsonl", "paths": [str(jsonl)]}],
           "stages": [{"near_dedupe": {**PARITY, "verify": "jaccard"}}], "writer": {"rejects": "none"}}
    (Path(args.work) / "job.yaml").write_text(json.dumps(job))


def run_tool(name: str, commands: list[list[str]], args) -> dict:
    env = {"PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    logs = Path(args.work) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tag = "".join(c if c.isalnum() or c in "=-" else "_" for c in name)
    parts = [measure(cmd, env, logs / f"{tag}-{i}.log") for i, cmd in enumerate(commands)]
    bad = [p for p in parts if p["rc"] != 0]
    if bad:
        raise RuntimeError(f"{name} failed: {bad[0]['cmd']} (see {logs})")
    out = {"wall_s": sum(p["wall_s"] for p in parts), "cpu_s": sum(p["cpu_s"] for p in parts),
           "tree_pss_mb": max(p["tree_pss_mb"] for p in parts),
           "max_proc_rss_mb": max(p["max_proc_rss_mb"] for p in parts),
           "max_proc_pss_mb": max(p["max_proc_pss_mb"] for p in parts),
           "max_proc_uss_mb": max(p["max_proc_uss_mb"] for p in parts),
           "max_proc": max(parts, key=lambda p: p["max_proc_pss_mb"])["max_proc"],
           "max_proc_anon_mb": max(p["max_proc_anon_mb"] for p in parts),
           "max_anon_proc": max(parts, key=lambda p: p["max_proc_anon_mb"])["max_anon_proc"],
           "result": parts[-1]["result"], "stage_wall_s": [round(p["wall_s"], 2) for p in parts]}
    if name == "sigma curate job":
        manifest = json.loads((Path(args.work) / "out_curate" / "manifest.json").read_text())
        out["result"] = {"docs": manifest["totals"]["input"],
                         "removed": manifest["totals"]["dropped_by_reason"].get("near_duplicate", 0),
                         "balanced": manifest["totals"]["balanced"]}
    return out


def signature_rate(name: str, run: dict, docs: int) -> float | None:
    """Documents per CPU-second of the signature phase (shingling + MinHash)."""
    r = run["result"]
    if name.startswith("sigma") and "signal_cpu_s" in r:
        return docs / r["signal_cpu_s"]
    if name.startswith("datatrove"):
        return docs / (run["stage_wall_s"][0] * 2)  # stage 1 keeps both workers busy
    phases = r.get("phases_s", {})
    if "shingle+minhash" in phases:
        return docs / phases["shingle+minhash"]
    return None


def cores(name: str, args) -> int:
    return 1 if name.startswith(("datasketch", "rensa per-doc")) else args.num_cpus


def compare(args) -> int:
    Path(args.work).mkdir(parents=True, exist_ok=True)
    corpus = Path(args.input) if args.input else build_corpus(args)
    write_curate_job(args, corpus)
    if args.input:
        docs = sum(sum(1 for _ in open(p, "rb")) for p in glob.glob(str(corpus / "*.jsonl")))
    else:
        docs = json.loads((corpus / "manifest.json").read_text())["docs"]
    chosen = tools(args, corpus)
    names = [n for n in chosen if not args.tools or n in args.tools]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(args.repeat):
        for name in names:
            if name in ("datasketch update loop",) and rep > 0:
                continue  # three minutes a run: once is enough to place it
            run = run_tool(name, chosen[name], args)
            runs[name].append(run)
            print(f"[{rep + 1}/{args.repeat}] {name}: {run['wall_s']:.1f} s, "
                  f"removed {run['result'].get('removed')}", file=sys.stderr, flush=True)
    table = summarise(runs, docs, args)
    print(table)
    out = Path(args.work) / "results.json"
    out.write_text(json.dumps({"docs": docs, "runs": runs, "load": os.getloadavg()}, indent=1))
    print(f"\nraw results: {out}", file=sys.stderr)
    return 0


def in_ray_s(run: dict) -> float:
    """For this stage: the seconds after Ray is up (signals and decision); for a peer: its wall time."""
    phases = run["result"].get("phases_s", {})
    if "ray_start" in phases:
        return phases["read_and_signal"] + phases["decide"]
    return run["wall_s"]


def summarise(runs: dict[str, list[dict]], docs: int, args) -> str:
    med = {n: statistics.median(r["wall_s"] for r in rs) for n, rs in runs.items() if rs}
    up = {n: statistics.median(in_ray_s(r) for r in rs) for n, rs in runs.items() if rs}
    ref = "sigma verify=jaccard"
    lines = [f"corpus: {docs:,} documents; times are medians of {args.repeat} runs (min-max); machine load "
             f"{os.getloadavg()[0]:.1f} at the end; 'Ray up' = this stage's time once Ray has started", "",
             "| run | n | wall s | Ray up s | docs/s | docs/s per core | signatures docs/s per core | CPU s "
             "| peak PSS MB | largest process: private (PSS) MB | removed | clusters | x of sigma's wall "
             "| x of sigma's Ray up |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rs in runs.items():
        if not rs:
            continue
        walls = [r["wall_s"] for r in rs]
        last = rs[-1]
        sig = signature_rate(name, last, docs)
        res = last["result"]
        lines.append(
            f"| {name} | {len(rs)} | {med[name]:.1f} ({min(walls):.1f}-{max(walls):.1f}) | {up[name]:.1f} "
            f"| {docs / med[name]:,.0f} | {docs / med[name] / cores(name, args):,.0f} "
            f"| {f'{sig:,.0f}' if sig else 'n/a'} | {statistics.median(r['cpu_s'] for r in rs):.0f} "
            f"| {max(r['tree_pss_mb'] for r in rs):,.0f} | {max(r['max_proc_uss_mb'] for r in rs):,.0f} "
            f"({max(r['max_proc_pss_mb'] for r in rs):,.0f}) "
            f"| {res.get('removed', 'n/a')} | {res.get('clusters', 'n/a')} "
            f"| {med[name] / med[ref] if ref in med else float('nan'):.1f} "
            f"| {up[name] / up[ref] if ref in up else float('nan'):.1f} |")
    return "\n".join(lines)


# -- scaling --------------------------------------------------------------------------------------------


FAMILY_RATES = (0.01, 0.03, 0.3)  # the copies of a family's base: two near duplicates and one that is not


def mutate(words: list[str], rng: random.Random, rate: float, vocabulary: list[str]) -> list[str]:
    """Replace (or, one time in four, delete) `rate` of the words, drawing from `vocabulary`."""
    words = list(words)
    for i in rng.sample(range(len(words)), min(len(words), max(1, round(rate * len(words))))):
        words[i] = rng.choice(vocabulary) if rng.random() < 0.75 else ""
    return words


def scaled_corpus(corpus: Path, size: int, out: Path, max_chars: int) -> Path:
    """`size` documents in families of four, so every size has the same duplicate structure: a
    base (a real document, cut to `max_chars`, the first time; after that the real document with
    half its words redrawn from the corpus vocabulary, which makes it a new document) and three
    copies with 1%, 3% and 30% of the words replaced or deleted. Seeded; 64 MB JSONL shards."""
    if (out / "_done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    real = []
    for path in sorted(glob.glob(str(corpus / "jsonl" / "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            real += [json.loads(line)["text"][:max_chars].split(" ") for line in f]
    vocabulary = sorted({w for words in real[::50] for w in words if w.strip()})
    written, shard, size_now, family = 0, 0, 0, 0
    f = open(out / f"part-{shard:05d}.jsonl", "w", encoding="utf-8")
    while written < size:
        rng = random.Random(zlib.crc32(f"family/{family}".encode()))
        words = real[family % len(real)]
        base = words if family < len(real) else mutate(words, rng, 0.5, vocabulary)
        members = [base] + [mutate(base, rng, rate, vocabulary) for rate in FAMILY_RATES]
        for k, member in enumerate(members[: size - written]):
            line = json.dumps({"id": f"{family}#{k}", "text": " ".join(member)}, ensure_ascii=False) + "\n"
            f.write(line)
            written += 1
            size_now += len(line)
            if size_now > 64 << 20:
                f.close()
                shard, size_now = shard + 1, 0
                f = open(out / f"part-{shard:05d}.jsonl", "w", encoding="utf-8")
        family += 1
    f.close()
    (out / "_done").write_text(str(written))
    return out


def scale(args) -> int:
    """The stage alone on growing mutated corpora."""
    corpus = build_corpus(args)
    lines = ["| documents | MB of JSONL | wall s | Ray start s | signals s | decide s "
             "| s per 10k docs (signals + decide) | CPU s | peak PSS MB | largest process: private (PSS) MB "
             "| partitions | candidate pairs | removed |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size in args.sizes:
        data = scaled_corpus(corpus, size, Path(args.work) / f"scale-{size}", args.max_chars)
        mb = sum(os.path.getsize(p) for p in glob.glob(str(data / "*.jsonl"))) / 1e6
        cmd = [sys.executable, str(Path(__file__).resolve()), "ours", "--input", str(data), "--num-cpus",
               str(args.num_cpus), "--options", json.dumps({**PARITY, "verify": args.verify})]
        run = run_tool(f"scale {size}", [cmd], args)
        r = run["result"]
        ph = r["phases_s"]
        work = ph["read_and_signal"] + ph["decide"]
        lines.append(f"| {size:,} | {mb:,.0f} | {run['wall_s']:.1f} | {ph['ray_start']:.1f} "
                     f"| {ph['read_and_signal']:.1f} | {ph['decide']:.1f} | {work / size * 1e4:.2f} "
                     f"| {run['cpu_s']:.0f} | {run['tree_pss_mb']:,.0f} "
                     f"| {run['max_proc_uss_mb']:,.0f} ({run['max_proc_pss_mb']:,.0f}) | {r.get('partitions')} "
                     f"| {r.get('candidates', 'n/a')} "
                     f"| {r.get('removed')} |")
        print(lines[-1], file=sys.stderr, flush=True)
        (Path(args.work) / f"scale-{size}.json").write_text(json.dumps(run, indent=1))
    print("\n".join(lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("compare", "scale"):
        p = sub.add_parser(name)
        p.add_argument("--work", default=str(TMP / "sigma-dedupe-bench"), help="scratch folder (corpus, outputs)")
        p.add_argument("--peer-venvs", default=str(TMP / "peers"))
        p.add_argument("--num-cpus", type=int, default=2)
    sub.choices["compare"].add_argument("--repeat", type=int, default=3)
    sub.choices["compare"].add_argument("--tools", nargs="*", help="only these runs (names as in the table)")
    sub.choices["compare"].add_argument("--input", help="a folder of JSONL shards instead of the peers' corpus "
                                        "(e.g. a scaled corpus that `scale` wrote)")
    sub.choices["scale"].add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    sub.choices["scale"].add_argument("--max-chars", type=int, default=2000, help="cut documents to this length")
    sub.choices["scale"].add_argument("--verify", default="jaccard")
    p = sub.add_parser("ours")
    p.add_argument("--input", required=True, help="folder of JSONL shards ({id, text})")
    p.add_argument("--options", default="{}", help="near_dedupe options as JSON")
    p.add_argument("--kind", default="other")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--signatures-only", action="store_true")
    args = ap.parse_args()
    return {"compare": compare, "scale": scale, "ours": run_ours}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
