"""The decode kernels compiled for a GPU that is not here: registers, spills and shared memory of
each kernel and launch configuration, by Triton's ahead-of-time compile and the ``cuobjdump`` it
ships. No GPU, no device time: what limits occupancy (programs resident per SM) is read before a
run, and a kernel that the interpreter runs but the compiler cannot lower fails here.

    python bench/kernel_resources.py            # sm_90 (H100, H200), Sigma-1.5B's heads and GQA 16/16
    python bench/kernel_resources.py --arch 80  # another GPU
    python bench/kernel_resources.py --quick    # one launch of each kernel (a test runs this)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("error: unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from bench.decode import TUNING  # noqa: E402
from sigma.kernels import triton_decode as td  # noqa: E402

LAYOUTS = {"DiffQKV 32/4/16": td.Layout(32, 4, 16, 64, 64, 4), "GQA 16/16": td.Layout(32, 16, 16, 64, 64, 1)}
POINTERS = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "Out": "*bf16", "OPart": "*fp32", "LsePart": "*fp32",
            "Scores": "*fp32", "GroupMax": "*fp32", "PickedScores": "*fp32", "Lengths": "*i32", "Slots": "*i32",
            "Picked": "*i32", "Positions": "*i32", "scale_log2": "fp32"}


def compile_kernel(kernel, constants: dict, arch: int, num_warps: int, num_stages: int, maxnreg: int | None = None) -> dict:
    """Compile ``kernel`` with these constexprs for ``sm_<arch>``; its resources from the cubin."""
    names = kernel.arg_names
    constants = {n: v for n, v in constants.items() if n in names}
    signature = {n: "constexpr" if n in constants else POINTERS.get(n, "i32") for n in names}
    source = ASTSource(kernel, signature, constexprs={(names.index(n),): v for n, v in constants.items()})
    options = {"num_warps": num_warps, "num_stages": num_stages, **({"maxnreg": maxnreg} if maxnreg else {})}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        usage = subprocess.run([str(tool), "-res-usage", cubin.name], capture_output=True, text=True, check=True).stdout
    found = dict(re.findall(r"(REG|LOCAL|SHARED):(\d+)", usage))
    return {"registers": int(found["REG"]), "spill_bytes": int(found["LOCAL"]), "shared_bytes": int(found["SHARED"]),
            "dynamic_shared_bytes": compiled.metadata.shared}


def programs_per_sm(registers: int, warps: int, shared: int, regs_per_sm: int = 65536,
                    shared_per_sm: int = 228 * 1024, max_warps: int = 64) -> int:
    """Programs one SM holds at once (Hopper's limits): registers (allocated per warp in units of
    256), shared memory and warps, whichever runs out first."""
    per_warp = -(-registers * 32 // 256) * 256
    return min(regs_per_sm // (per_warp * warps), shared_per_sm // max(shared, 1), max_warps // warps)


def resources(arch: int, top_k: int = 100, quick: bool = False) -> list[dict]:
    rows = []
    kp = max(16, 1 << (top_k - 1).bit_length())
    tuning = TUNING[:1] if quick else TUNING
    for name, layout in list(LAYOUTS.items())[: 1 if quick else None]:
        heads = layout.constexprs()
        base = {**heads, "UPCAST": False, "PRECISION": "tf32"}
        launches = [("split-KV", td._split_kv_kernel, dict(base, BLOCK_T=b), (b, w, s, r)) for b, w, s, _, r in tuning]
        launches.append(("combine", td._combine_kernel, dict(SP=256, D_V=layout.d_v, DVP=64), (None, 4, 1, None)))
        if layout.n_k != layout.n_v:
            launches += [("selective V: K pass", td._scores_kernel, dict(base, BLOCK_T=b, G=td.GROUP), (b, w, s, r))
                         for b, w, s, _, r in tuning if b >= td.GROUP]
            launches.append(("selective V: select", td._select_kernel, dict(
                G=td.GROUP, CH=td.GROUP_CHUNK, NG=kp, KP=kp, C=layout.n_q // layout.n_v, R=layout.r, D_V=layout.d_v,
                DVP=64, WRITE_POSITIONS=False), (None, 4, 1, None)))
        for kernel_name, kernel, constants, (block, warps, stages, maxnreg) in launches:
            found = compile_kernel(kernel, constants, arch, warps, stages, maxnreg)
            rows.append({"layout": name, "kernel": kernel_name, "block_t": block, "warps": warps, "stages": stages,
                         "maxnreg": maxnreg, **found})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability as a number (90: sm_90)")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="one launch of each kernel, Sigma-1.5B's heads only")
    args = parser.parse_args(argv)
    if "nvidia" not in triton.backends.backends:
        print("error: this triton has no CUDA backend to compile with", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"decode kernels compiled for sm_{args.arch} (no GPU): resources per program")
    for column in ("layout", "kernel", "block", "warps", "stages", "register cap", "registers / thread", "spill bytes",
                   "shared KiB", "programs / SM"):
        table.add_column(column, justify="left" if column in ("layout", "kernel") else "right")
    for r in resources(args.arch, args.top_k, args.quick):
        shared = r["shared_bytes"] + r["dynamic_shared_bytes"]
        table.add_row(r["layout"], r["kernel"], str(r["block_t"] or "-"), str(r["warps"]), str(r["stages"]),
                      str(r["maxnreg"] or "-"), str(r["registers"]), str(r["spill_bytes"]), f"{shared / 1024:.1f}",
                      str(programs_per_sm(r["registers"], r["warps"], shared)))
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
