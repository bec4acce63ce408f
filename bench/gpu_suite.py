"""The whole device run in one command, planned to fit 300 s of GPU time: decode first, then
training, every measurement appended to one JSON-lines file the moment it is taken and printed;
the goals table last.

    python bench/gpu_suite.py --out suite          # on the GPU: suite/rows.jsonl, suite/suite.log, suite/tables.md
    python bench/gpu_suite.py --plan               # the plan, part by part, without running it
    python bench/gpu_suite.py --smoke --out smoke  # the same plumbing on the CPU, tiny shapes

Parts run one after another, each in its own process (a CUDA fault in one poisons only its own
context) with its own time limit, and the whole run stops at ``--time-limit`` (300 s): a part
that would start with less time left than it needs is recorded as skipped, a part cut off keeps
every row it finished. Batches are fixed, found by memory arithmetic on the CPU (``bench/train.py
--plan``), never probed. A check that fails is a row with ``"ok": false`` and the timings go on.

The plan, planned seconds each (a cold machine: empty Triton and inductor caches; the first run's
``wall_s`` rows correct it):

==============  ====  ============================================================================
part            plan  rows
==============  ====  ============================================================================
decode-kernels    70  the copy reference (4 GiB: copy_ eager, copy_ in a CUDA graph, a Triton copy
                      kernel); every backend against float64 (3 head layouts, bf16); KET at 32K,
                      batch 1 and 8, Sigma-1.5B's heads (32/4/16) against GQA 16/16: Triton
                      split-KV (tuned over 7 launches), selective V k=100 and its K pass, concat-V
                      on SDPA, GQA on SDPA (flash, efficient, cuDNN) and on Triton (untuned); selective V's
                      rows against torch.topk; each tuned launch against the torch path
decode-step       95  the decoder against full recompute (float32, 4 layers, prompts of 300, 37
                      and 1 tokens, 24 steps): Triton with its CUDA graph twice (digests must be
                      equal) and without, torch, concat-V; Sigma-1.5B and its GQA baseline at 32K,
                      batch 1 and 8: CEET, tokens/s with eager blocks and with compiled blocks
                      (whose logits must equal the eager step's), selective V; each step against
                      its bytes floor; the largest batch at 32K, checked by a step
train            125  sigma-125m at 64 x 2048, sigma-1b at 16 x 2048, sigma-1.5b (augmented Q,
                      vocab 128,256, loss in chunks of 8192) at 8 x 2048: blocks compiled, head and
                      loss compiled, fused AdamW, 2 warm-up and 8 timed steps, MFU
train-gqa         70  the GQA baselines of sigma-125m and sigma-1b, at the same batches, when time
                      is left (their step-time ratio met its goal on the first H200 run)
==============  ====  ============================================================================

The first three fill 290 s; the last runs in what they leave (with warm compile caches,
``--compile-cache DIR`` carried from an earlier run, most of it). Rows append: a second run into
the same ``--out`` (``--only decode-step``, 95 s) compares the decoder checks' logits across
processes.
"""

from __future__ import annotations

import argparse
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.row_log import RowLog, read_rows  # noqa: E402

GOALS = {"mfu": {"sigma-1b": 0.60, "sigma-125m": 0.55}, "step_vs_gqa": 1.05, "ket_cut": 0.37,
         "selective_cut": 0.70, "tokens_vs_gqa": 1.4, "step_vs_floor": 1.5}
PART_NAMES = ("decode-kernels", "decode-step", "train", "train-gqa")


@dataclass(frozen=True)
class Part:
    name: str
    plan_s: int  # planned seconds on a cold H200
    need_s: int  # the least worth starting with: below it the part is skipped
    command: tuple[str, ...]
    extra: bool = False  # not in the 300 s plan: run only in the time the others leave


def parts(rows: Path, smoke: bool) -> list[Part]:
    py = sys.executable
    decode, train = (py, str(ROOT / "bench" / "decode.py")), (py, str(ROOT / "bench" / "train.py"))
    out = ("--rows", str(rows))
    if smoke:  # decode's own smoke run covers its Triton kernels; here the suite's plumbing
        return [Part("decode-kernels", 600, 1, (*decode, "--smoke", "--no-triton", "--only", "copy", "kernels", *out)),
                Part("decode-step", 600, 1, (*decode, "--smoke", "--no-triton", "--only", "decoder-checks", "models", "memory", *out)),
                Part("train", 600, 1, (*train, "--smoke", "--presets", "sigma-125m", "sigma-1.5b:8:8192", *out)),
                Part("train-gqa", 600, 1, (*train, "--smoke", "--presets", "sigma-125m-gqa", *out))]
    return [
        Part("decode-kernels", 70, 30, (*decode, "--only", "copy", "kernel-checks", "kernels", "--prefixes", "32768",
                                        "--batches", "1", "8", "--check-layouts", "3", "--reps", "10", *out)),
        Part("decode-step", 95, 40, (*decode, "--only", "decoder-checks", "models", "memory", "--e2e-prefixes", "32768",
                                     "--batches", "1", "8", "--steps", "16", "--reps", "10", *out)),
        Part("train", 125, 40, (*train, "--presets", "sigma-125m:64", "sigma-1b:16", "sigma-1.5b:8:8192", "--compile", "blocks",
                                "--steps", "8", "--warmup", "2", *out)),
        Part("train-gqa", 70, 40, (*train, "--presets", "sigma-125m-gqa:64", "sigma-1b-gqa:16", "--compile", "blocks",
                                   "--steps", "8", "--warmup", "2", *out), extra=True),
    ]


def run_part(part: Part, seconds: float, log: RowLog, suite_log: Path) -> None:
    """Run one part, its output to the suite's log and its rows echoed, stopped at ``seconds``."""
    started = time.perf_counter()
    print(f"== {part.name}: at most {seconds:.0f} s (planned {part.plan_s} s)", flush=True)
    with open(suite_log, "a") as out:
        out.write(f"== {part.name}: {' '.join(part.command[1:])}\n")
        proc = subprocess.Popen(part.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            for line in _lines_until(proc, started + seconds):
                out.write(line)
                if line.startswith(("row ", "== ")):
                    print("   " + line.rstrip()[:220], flush=True)
            status = "ok" if proc.wait() == 0 else f"exit {proc.returncode}"
        except TimeoutError:
            proc.kill()
            proc.wait()
            status = f"cut off at {seconds:.0f} s"
    log.write("part", name=part.name, status=status, wall_s=round(time.perf_counter() - started, 1), plan_s=part.plan_s)


def _lines_until(proc: subprocess.Popen, deadline: float):
    """The process's output lines; TimeoutError at ``deadline``, even while it is silent."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError
        if not selector.select(timeout=min(left, 1.0)):
            continue
        line = proc.stdout.readline()
        if not line:
            return
        yield line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("suite"), help="folder for rows.jsonl, suite.log and tables.md")
    parser.add_argument("--time-limit", type=float, help="seconds for the whole run (default 300; 1800 with --smoke)")
    parser.add_argument("--only", nargs="+", choices=PART_NAMES, help="run only these parts")
    parser.add_argument("--compile-cache", type=Path, help="keep Triton's and inductor's caches here (carry it to the next run)")
    parser.add_argument("--plan", action="store_true", help="print the plan and exit")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: the code paths, not speed")
    args = parser.parse_args(argv)
    args.time_limit = args.time_limit or (1800 if args.smoke else 300)
    rows = args.out / "rows.jsonl"
    plan = [p for p in parts(rows, args.smoke) if not args.only or p.name in args.only]
    if args.plan:
        for part in plan:
            print(f"{part.name:15} {part.plan_s:4d} s  {'(if time is left) ' if part.extra else ''}{' '.join(part.command[2:])}")
        print(f"{'planned':15} {sum(p.plan_s for p in plan if not p.extra):4d} s of a {args.time_limit:.0f} s limit")
        return 0
    try:
        import pydantic  # noqa: F401 - sigma.config needs it, and the GPU image lacks it
    except ImportError:
        print("error: pydantic is not installed; carry its wheels (docs/benchmarks.md, the device suite, says how)",
              file=sys.stderr)
        return 2
    if args.compile_cache:
        cache = args.compile_cache.resolve()
        os.environ["TRITON_CACHE_DIR"], os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "triton"), str(cache / "inductor")
    args.out.mkdir(parents=True, exist_ok=True)
    log = RowLog(rows, "suite", echo=False)
    log.write("suite", plan=[[p.name, p.plan_s] for p in plan], time_limit_s=args.time_limit, smoke=args.smoke)
    started = time.perf_counter()
    for part in plan:
        left = args.time_limit - (time.perf_counter() - started)
        if left < part.need_s:
            log.write("part", name=part.name, status=f"skipped: {left:.0f} s left, {part.need_s} s needed", plan_s=part.plan_s)
            print(f"== {part.name}: skipped, {left:.0f} s left", flush=True)
            continue
        run_part(part, left, log, args.out / "suite.log")
    wall = time.perf_counter() - started
    log.write("suite-end", wall_s=round(wall, 1))
    found = read_rows(rows)
    tables = render_tables(found)
    (args.out / "tables.md").write_text(tables)
    print(tables)
    print(f"suite wall time {wall:.0f} s")
    ran = [r for r in found if r["kind"] == "part" and not r["status"].startswith("skipped")]
    return 0 if all(r["status"] == "ok" for r in ran) else 1


# --------------------------------------------------------------------------------- the goals table


def goal_rows(rows: list[dict]) -> list[tuple[str, str, str, str]]:
    """(what, measured, goal, met) for every goal the rows measured, every failed check and error."""
    from bench.decode import copy_reference
    from bench.train import step_vs_gqa

    out = []
    train = [r for r in rows if r["kind"] == "train" and "step_s" in r]
    for r in train:
        goal = GOALS["mfu"].get(r["preset"])
        if r.get("mfu") is not None:
            out.append((f"MFU {r['preset']} ({r['batch']} x {r['seq_len']})", f"{100 * r['mfu']:.1f}%",
                        f">= {100 * goal:.0f}%" if goal else "-", _met(r["mfu"] >= goal) if goal else "-"))
    for preset, ratio in step_vs_gqa(train).items():
        out.append((f"step time {preset} / GQA", f"{ratio:.3f}", f"<= {GOALS['step_vs_gqa']}", _met(ratio <= GOALS["step_vs_gqa"])))

    copy = copy_reference(rows)
    kets = [r for r in rows if r["kind"] == "ket" and "ket_s" in r]
    gqa = {(r["batch"], r["prefix"]): r["ket_s"] for r in kets if r["model"] == "GQA 16/16" and r["kernel"].startswith("SDPA")}
    for r in kets:
        key = (r["batch"], r["prefix"])
        if r["model"] == "GQA 16/16" or key not in gqa or "K pass" in r["kernel"]:
            continue
        goal = GOALS["selective_cut"] if "selective" in r["kernel"] else GOALS["ket_cut"]
        cut = 1 - r["ket_s"] / gqa[key]
        bandwidth = f", {100 * r['bytes'] / r['ket_s'] / copy:.0f}% of copy BW" if copy else ""
        out.append((f"KET {r['kernel']}, batch {r['batch']}, {r['prefix']:,}", f"cut {100 * cut:.1f}%{bandwidth}",
                    f"cut >= {100 * goal:.0f}%", _met(cut >= goal)))

    steps = [r for r in rows if r["kind"] == "model" and "step_s" in r and "selective" not in r["attention"]]
    best: dict[tuple, dict] = {}
    for r in steps:
        key = (r["model"], r["batch"], r["prefix"])
        if key not in best or r["step_s"] < best[key]["step_s"]:
            best[key] = r
    for (model, batch, prefix), r in best.items():
        if batch == 1 and "floor_s" in r:
            ratio = r["step_s"] / r["floor_s"]
            out.append((f"step {model} ({r['blocks']} blocks), batch 1, {prefix:,} / bytes floor",
                        f"{ratio:.2f}x ({1e3 * r['step_s']:.2f} ms)", f"<= {GOALS['step_vs_floor']}x",
                        _met(ratio <= GOALS["step_vs_floor"])))
        if model != "GQA 16/16" and ("GQA 16/16", batch, prefix) in best and batch > 1:
            ratio = best[("GQA 16/16", batch, prefix)]["step_s"] / r["step_s"]
            out.append((f"tokens/s {model} / GQA, batch {batch}, {prefix:,}", f"{ratio:.2f}x",
                        f">= {GOALS['tokens_vs_gqa']}x", _met(ratio >= GOALS["tokens_vs_gqa"])))
    digests: dict[str, dict[int, set]] = {}  # the same decoder check in several processes (runs appended to one file)
    for r in rows:
        if r["kind"] == "check" and "digest" in r:
            digests.setdefault(r["name"], {}).setdefault(r["pid"], set()).add(r["digest"])
    for name, by_process in digests.items():
        if len(by_process) > 1:
            same = len(set().union(*by_process.values())) == 1
            out.append((f"{name}: logits across {len(by_process)} processes", "identical" if same else "DIFFER", "identical",
                        _met(same)))
    for r in rows:
        if r["kind"] == "check" and not r.get("ok"):
            out.append((f"check: {r['name']}", r.get("error", "failed"), "ok", "NO"))
        elif "error" in r and r["kind"] != "check":
            what = r.get("preset") or r.get("kernel") or r.get("model") or r.get("variant") or ""
            out.append((f"{r['kind']}: {what}", r["error"][:100], "measured", "NO"))
        elif r["kind"] == "part" and r["status"] != "ok":
            out.append((f"part {r['name']}", r["status"], "ok", "NO"))
    return out


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def render_tables(rows: list[dict]) -> str:
    """The goals table and the parts' times, in Markdown (for docs/benchmarks.md)."""
    device = next((r["device"] for r in rows if r["kind"] == "device"), "-")
    lines = [f"Goals on {device}:", "", "| what | measured | goal | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in goal_rows(rows)]
    lines += ["", "| part | status | wall s | plan s |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['name']} | {r['status']} | {r.get('wall_s', '-')} | {r['plan_s']} |" for r in rows if r["kind"] == "part"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
