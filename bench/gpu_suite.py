"""The whole device run in one command: training MFU and the decode tables, each checked before it
is timed, then every table and the goals printed last.

Sized for a short lease on one GPU (about 9 minutes on an H200 or H100): three parts, each its own
process with its own time limit, so a part that fails or runs long costs only itself:

- ``train``: sigma-125m and sigma-1b against their GQA baselines, each at the largest power-of-two
  batch that fits, T = 2048, bf16, blocks compiled once (``bench/train.py --compile blocks``);
- ``train-1.5b``: Sigma-1.5B (augmented Q, vocab 128,256) and its GQA baseline, chunked loss;
- ``decode``: decode-kernel time at 32K and 64K, batches 1 and 8, Sigma-1.5B's heads (32/4/16)
  against GQA 16/16 on SDPA, selective V, decode tokens/s at 32K, the copy bandwidth, greedy with
  the cache against full recompute (``bench/decode.py``).

    python bench/gpu_suite.py --out suite              # on the GPU; JSON and a log per part in suite/
    python bench/gpu_suite.py --smoke --out /tmp/s     # the same code paths on the CPU, tiny shapes

The goals (from the project's plan): MFU >= 60% for sigma-1b and >= 55% for sigma-125m; DiffQKV's
step time within 5% of GQA's; decode-kernel time >= 37% below GQA 16/16 on SDPA (selective V:
>= 70%); decode tokens/s at 32K, batch 8, >= 1.4x GQA's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {"mfu": {"sigma-1b": 0.60, "sigma-125m": 0.55}, "step_vs_gqa": 1.05, "ket_cut": 0.37,
         "selective_cut": 0.70, "tokens_vs_gqa": 1.4}


def parts(out: Path, smoke: bool) -> list[tuple[str, list[str], int]]:
    """(name, command, seconds allowed) for each part of the run."""
    train = [sys.executable, str(ROOT / "bench" / "train.py")]
    decode = [sys.executable, str(ROOT / "bench" / "decode.py")]
    if smoke:  # decode's own smoke test runs its Triton kernels; here the suite's plumbing
        return [("train", [*train, "--smoke", "--json", str(out / "train.json")], 600),
                ("train-1.5b", [*train, "--smoke", "--loss-chunk", "64", "--json", str(out / "train-1.5b.json")], 600),
                ("decode", [*decode, "--smoke", "--no-triton", "--json", str(out / "decode.json")], 600)]
    timed = ["--find-max-batch", "--compile", "blocks", "--steps", "10", "--warmup", "3"]
    return [
        ("train", [*train, "--presets", "sigma-125m", "sigma-125m-gqa", "sigma-1b", "sigma-1b-gqa", *timed,
                   "--json", str(out / "train.json")], 210),
        ("train-1.5b", [*train, "--presets", "sigma-1.5b", "sigma-1.5b-gqa", "--loss-chunk", "8192", *timed,
                        "--json", str(out / "train-1.5b.json")], 130),
        ("decode", [*decode, "--prefixes", "32768", "65536", "--batches", "1", "8", "--e2e-prefixes", "32768",
                    "--steps", "16", "--reps", "10", "--json", str(out / "decode.json")], 200),
    ]


def run_part(name: str, command: list[str], seconds: int, out: Path) -> dict:
    started = time.perf_counter()
    print(f"== {name}: {' '.join(command[1:])} (at most {seconds} s)", flush=True)
    with open(out / f"{name}.log", "w") as log:
        try:
            proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=seconds, cwd=ROOT)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {seconds} s"
    wall = time.perf_counter() - started
    tail = (out / f"{name}.log").read_text().splitlines()[-3:]
    print(f"   {status}, {wall:.0f} s" + ("" if status == "ok" else "\n   " + "\n   ".join(tail)), flush=True)
    return {"part": name, "status": status, "wall_s": wall}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def goal_rows(train: list[dict], decode: dict | None) -> list[tuple[str, str, str, str]]:
    """(what, measured, goal, met) for every goal this run measured."""
    rows = []
    for r in train:
        if r["preset"] in GOALS["mfu"] and r.get("mfu"):
            goal = GOALS["mfu"][r["preset"]]
            rows.append((f"MFU {r['preset']} (batch {r['batch']})", f"{100 * r['mfu']:.1f}%", f">= {100 * goal:.0f}%",
                         _met(r["mfu"] >= goal)))
        if r.get("step_vs_gqa"):
            rows.append((f"step time {r['preset']} / GQA", f"{r['step_vs_gqa']:.3f}", f"<= {GOALS['step_vs_gqa']}",
                         _met(r["step_vs_gqa"] <= GOALS["step_vs_gqa"])))
    if not decode:
        return rows
    gqa = {(r["batch"], r["prefix"]): r["ket_s"] for r in decode["kernels"]
           if r["model"] == "GQA 16/16" and r["kernel"].startswith("SDPA")}
    copy = decode.get("copy_bandwidth")
    for r in decode["kernels"]:
        key = (r["batch"], r["prefix"])
        if r["model"] == "GQA 16/16" or key not in gqa or "K pass" in r["kernel"]:
            continue
        goal = GOALS["selective_cut"] if "selective" in r["kernel"] else GOALS["ket_cut"]
        cut = 1 - r["ket_s"] / gqa[key]
        bandwidth = f", {100 * r['bytes'] / r['ket_s'] / copy:.0f}% of copy BW" if copy and r.get("bytes") else ""
        rows.append((f"KET {r['kernel']}, batch {r['batch']}, {r['prefix']:,}", f"cut {100 * cut:.1f}%{bandwidth}",
                     f"cut >= {100 * goal:.0f}%", _met(cut >= goal)))
    best = {}
    for r in decode["models"]:
        if r["model"] == "GQA 16/16":
            key = (r["batch"], r["prefix"])
            best[key] = max(best.get(key, 0.0), r["tokens_per_s"])
    for r in decode["models"]:
        key = (r["batch"], r["prefix"])
        if r["model"] != "GQA 16/16" and key in best and r["batch"] == max(k[0] for k in best):
            ratio = r["tokens_per_s"] / best[key]
            rows.append((f"tokens/s {r['attention']}, batch {r['batch']}, {r['prefix']:,}", f"{ratio:.2f}x GQA",
                         f">= {GOALS['tokens_vs_gqa']}x", _met(ratio >= GOALS["tokens_vs_gqa"])))
    for r in decode.get("greedy_checks", []):
        rows.append((f"greedy with cache ({r['backend']}) = full recompute", f"{r['tokens_equal']}/{r['tokens']}",
                     "all", _met(r["tokens_equal"] == r["tokens"])))
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("suite"), help="folder for each part's JSON and log")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: the code paths, not speed")
    parser.add_argument("--only", nargs="+", choices=["train", "train-1.5b", "decode"], help="run only these parts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    summary = [run_part(name, command, seconds, args.out) for name, command, seconds in parts(args.out, args.smoke)
               if not args.only or name in args.only]
    (args.out / "suite.json").write_text(json.dumps(summary, indent=1))

    from rich.console import Console
    from rich.table import Table

    from bench.decode import print_tables
    from bench.train import print_table

    train_results = []
    for name in ("train", "train-1.5b"):
        found = _load(args.out / f"{name}.json")
        if found:
            print_table(found["results"], found["device"])
            train_results += found["results"]
    decode = _load(args.out / "decode.json")
    if decode:
        print_tables(decode)
    table = Table(title="goals")
    for column in ("what", "measured", "goal", "met"):
        table.add_column(column)
    for row in goal_rows(train_results, decode):
        table.add_row(*row)
    Console(width=160).print(table)
    for part in summary:
        print(f"{part['part']}: {part['status']} ({part['wall_s']:.0f} s)")
    print(f"suite wall time {time.perf_counter() - started:.0f} s")
    return 0 if all(p["status"] == "ok" for p in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
