"""A GQA model converted to DiffQKV: zero-shot cost per K-head count, and the loop's engine on it.

    python bench/convert.py bpb --k-heads 3 1 --out-dir converted      # the table for docs/benchmarks.md
    python bench/convert.py bpb --k-heads 1 --extra runs/adapt         # also score other Sigma checkpoints
    python bench/convert.py train-cost --model converted/smollm2-k1     # full fine-tuning vs LoRA on this CPU
    python bench/convert.py suite --model converted/smollm2-k3 --limit 6 --window 256   # a loop's round 0

``bpb`` converts the source (default: the packaged SmolLM2-135M-Instruct, a Q4_1 GGUF, de-quantized)
for each N, and scores the source through transformers and each conversion through Sigma's model
on the same fixed held-out system set (``held_out_system_set``): bits per byte, each document after
the end-of-text token, in windows of 1024 tokens, every token predicted once, with the same token
ids for every model. Beside it, the KV cache bytes per token (bf16, all layers) of K and of V.

The synthesis comparison of engines (Sigma's engine on a conversion, transformers, vLLM) is
``bench/synthesis.py engines``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
HELD_OUT_MAN = ["tar", "ssh", "find", "grep", "du", "chmod"]  # section 1
HELD_OUT_LOG = "OpenSSH"  # the first 40 lines, one document
MAN_BYTES = 1200  # the head of each page (cut at a line end)
WINDOW = 1024


def held_out_system_set() -> list[tuple[str, str]]:
    """(name, text): the heads of six rendered man pages and 40 lines of Loghub's OpenSSH log.

    Training runs that are scored on it exclude these pages and that system (``HELD_OUT_MAN``,
    ``HELD_OUT_LOG``)."""
    from stages.ingest.man import ManSource

    source = ManSource("man", roots=["/usr/share/man"], sections=["1"], include=HELD_OUT_MAN)
    docs = {}
    for unit in source.plan():
        for result in source.read(unit):
            for row in result.kept.to_pylist():
                name = Path(row["uri"]).name.split(".")[0]
                text = row["text"][:MAN_BYTES]
                docs[f"man/{name}"] = text[: text.rfind("\n") + 1] or text
    missing = sorted(set(HELD_OUT_MAN) - {k.split("/")[1] for k in docs})
    if missing:
        raise SystemExit(f"man pages {missing} are not installed here: the held-out set would differ")
    lines = (LOGHUB / HELD_OUT_LOG / f"{HELD_OUT_LOG}_2k.log").read_text().splitlines(keepends=True)[:40]
    logs = {f"log/{HELD_OUT_LOG}-{i // 40}": "".join(lines[i : i + 40]) for i in range(0, 40, 40)}
    return sorted(docs.items()) + sorted(logs.items())


@torch.no_grad()
def bits_per_byte(logits_of, documents: list[list[int]], texts: list[str]) -> tuple[float, int]:
    """Summed next-token loss over every document, in bits, per UTF-8 byte; and tokens predicted."""
    nll, tokens = 0.0, 0
    for ids in documents:
        ids = torch.tensor(ids)
        for start in range(0, len(ids) - 1, WINDOW):
            chunk = ids[start : start + WINDOW + 1]
            logits = logits_of(chunk[None, :-1])[0].float()
            nll += F.cross_entropy(logits, chunk[1:], reduction="sum").item()
            tokens += len(chunk) - 1
    return nll / math.log(2) / sum(len(t.encode()) for t in texts), tokens


def kv_bytes(config, dtype_bytes: int = 2) -> tuple[int, int]:
    """KV cache bytes per token over all layers: (K, V)."""
    return (config.n_k_heads * config.d_qk_head * config.n_layers * dtype_bytes,
            config.n_v_heads * config.d_v_head * config.n_layers * dtype_bytes)


def bpb_command(args) -> None:
    from sigma.checkpoint import load_weights, read_checkpoint
    from sigma.config import ModelConfig
    from sigma.convert import convert, converted_model, load_source
    from sigma.model import Transformer
    from sigma.tokenizer import end_of_text_id, load_tokenizer

    texts_named = held_out_system_set()
    names, texts = [n for n, _ in texts_named], [t for _, t in texts_named]
    print(f"held-out set: {len(texts)} documents, {sum(len(t.encode()) for t in texts):,} bytes ({', '.join(names)})", flush=True)
    source = load_source(args.src)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(source.tokenizer_files["tokenizer.json"])
    eos = end_of_text_id(tokenizer)
    documents = [[eos, *tokenizer.encode(t, add_special_tokens=False).ids] for t in texts]

    rows = []
    from sigma.backends.base import EngineSpec
    from sigma.backends.transformers_lm import load_transformers

    n_kv = source.config["num_key_value_heads"]
    base_config = converted_model(source, n_kv).config
    count = sum(len(d) - 1 for d in documents)
    source_bpb = args.source_bpb
    if source_bpb is None:
        hf_model, _, _ = load_transformers(EngineSpec(backend="transformers", model=args.src), torch.float32)
        started = time.perf_counter()
        source_bpb, count = bits_per_byte(lambda x: hf_model.eval()(input_ids=x).logits, documents, texts)
        rows.append((f"source ({args.src}, transformers)", n_kv, *kv_bytes(base_config), source_bpb, time.perf_counter() - started))
        print(f"source: {source_bpb:.4f} bits/byte over {count:,} tokens", flush=True)
        del hf_model

    for k in args.k_heads:
        model = converted_model(source, k).eval()
        if args.out_dir:
            convert(args.src, k, Path(args.out_dir) / f"{Path(args.src).stem.lower()}-k{k}", source=source)
        started = time.perf_counter()
        bpb, _ = bits_per_byte(model, documents, texts)
        rows.append((f"converted, K={k} (sigma)", k, *kv_bytes(model.config), bpb, time.perf_counter() - started))
        print(f"K={k}: {bpb:.4f} bits/byte", flush=True)
        del model
    for extra in args.extra:
        found = read_checkpoint(extra)
        config = ModelConfig.from_dict(found.state["model_config"])
        model = Transformer(config)
        load_weights(found, model)
        extra_tok = load_tokenizer(found.path / "tokenizer.json")
        if extra_tok.get_vocab() != tokenizer.get_vocab():
            raise SystemExit(f"{extra} has another tokenizer: its bits per byte would not be comparable token for token")
        started = time.perf_counter()
        bpb, _ = bits_per_byte(model.eval(), documents, texts)
        label = f"{found.path.parent.parent.name}/{found.path.name} ({found.state.get('tokens', 0):,} tokens)"
        rows.append((label, config.n_k_heads, *kv_bytes(config), bpb, time.perf_counter() - started))
        print(f"{label}: {bpb:.4f} bits/byte", flush=True)

    print("\n| model | K heads | K bytes/token | V bytes/token | KV vs source | held-out bits/byte | delta vs source | scoring s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    source_kv = sum(kv_bytes(base_config))
    for label, k, kb, vb, bpb, seconds in rows:
        print(f"| {label} | {k} | {kb:,} | {vb:,} | {(kb + vb) / source_kv:.3f} | {bpb:.4f} | {bpb - source_bpb:+.4f} | {seconds:.0f} |")
    print(f"\n{count:,} tokens scored per model; KV bytes per token in bf16 over all {base_config.n_layers} layers")


def train_cost_command(args) -> None:
    """Seconds per optimizer step and peak memory, full fine-tuning against LoRA, each mode in its
    own process (peak RSS is per process); random token ids, since speed does not depend on them."""
    import json
    import subprocess

    if args.mode:
        print(json.dumps(_train_cost(args)))
        return
    results = []
    for mode in ("full", "lora"):
        command = [sys.executable, __file__, "train-cost", "--mode", mode, "--model", args.model, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--rank", str(args.rank)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n{args.model}: batch {args.batch_size} x {args.seq_len} tokens, AdamW, float32, mean of steps 2..{args.steps}")
    print("| mode | trained parameters | s/step | tokens/s | peak RSS GiB | tokens/s vs full |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['trained']:,} | {r['step_s']:.1f} | {r['tokens_per_s']:.0f} | {r['rss_gib']:.2f} | "
              f"{r['tokens_per_s'] / results[0]['tokens_per_s']:.2f}x |")


def _train_cost(args) -> dict:
    import resource

    from sigma.generate import Engine

    model = Engine.load(args.model, device="cpu").model.train()
    adapters = []
    if args.mode == "lora":  # rank-r adapters on every attention and MLP projection, base frozen
        for param in model.parameters():
            param.requires_grad_(False)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.startswith("layers."):
                a = torch.nn.Parameter(torch.randn(args.rank, module.in_features) * 0.01)
                b = torch.nn.Parameter(torch.zeros(module.out_features, args.rank))
                adapters += [a, b]
                module.register_forward_hook(lambda m, inp, out, a=a, b=b: out + (inp[0] @ a.T) @ b.T * (16 / args.rank))
    params = adapters or [p for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(args.steps):
        batch = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len + 1), generator=generator)
        started = time.perf_counter()
        loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    step_s = sum(times[1:]) / max(1, len(times) - 1)
    return {"mode": args.mode, "trained": sum(p.numel() for p in params), "step_s": step_s,
            "tokens_per_s": args.batch_size * args.seq_len / step_s,
            "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def suite_command(args) -> None:
    """A Sigma checkpoint on the eval suite, log-likelihoods in windows of ``--window`` tokens: a
    converted start scored as the loop scores the checkpoints it trains from it (in windows of
    their training sequence length)."""
    from sigma.backends.base import EngineSpec, load_backend
    from sigma.evals.suite import score_suite
    from stages.ingest.eval_suite import ensure_suite

    backend = load_backend(EngineSpec(backend="sigma", model=args.model, device="cpu"))
    backend.score_window = args.window or backend.score_window
    result = score_suite(backend, ensure_suite(args.suite), limit=args.limit)
    kinds = sorted(result["bpb"])
    print(f"\nsuite {result['suite']['hash'][:12]}, limit {args.limit}, windows of {backend.score_window} tokens")
    print("| model | bits/byte all | " + " | ".join(kinds) + " | nl2cmd bits/byte | MC accuracy |")
    print("|---|---:|" + "---:|" * (len(kinds) + 2))
    print(f"| {args.model} | {result['bpb_all']:.4f} | " + " | ".join(f"{result['bpb'][k]:.4f}" for k in kinds)
          + f" | {result['nl2cmd_bpb']:.4f} | {result['mc']['accuracy']:.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    bpb = commands.add_parser("bpb", help="held-out bits per byte and KV bytes per K-head count")
    bpb.add_argument("--src", default="smollm2", help="source model (default: the packaged SmolLM2)")
    bpb.add_argument("--k-heads", type=int, nargs="*", default=[3, 1], help="conversions to score (none: only --extra)")
    bpb.add_argument("--source-bpb", type=float, help="the source's bits per byte from an earlier run: skip scoring it")
    bpb.add_argument("--out-dir", help="also write each conversion here as NAME-kN")
    bpb.add_argument("--extra", nargs="*", default=[], metavar="CKPT", help="more Sigma checkpoints to score (same tokenizer)")
    bpb.set_defaults(func=bpb_command)
    cost = commands.add_parser("train-cost", help="tokens/s and memory: full fine-tuning vs LoRA")
    cost.add_argument("--model", required=True, help="a converted checkpoint")
    cost.add_argument("--mode", choices=["full", "lora"], help="one mode in this process (default: both, in subprocesses)")
    cost.add_argument("--steps", type=int, default=4)
    cost.add_argument("--batch-size", type=int, default=4)
    cost.add_argument("--seq-len", type=int, default=256)
    cost.add_argument("--rank", type=int, default=16)
    cost.set_defaults(func=train_cost_command)
    suite = commands.add_parser("suite", help="a Sigma checkpoint on the eval suite, in windows of a given length")
    suite.add_argument("--model", required=True, help="a Sigma checkpoint (a converted one, say)")
    suite.add_argument("--suite", default="configs/eval/suite.yaml")
    suite.add_argument("--limit", type=int, help="documents per kind and multiple-choice items, as the loop's eval.suite.limit")
    suite.add_argument("--window", type=int, help="tokens per scoring window (default: the checkpoint's training length)")
    suite.set_defaults(func=suite_command)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
