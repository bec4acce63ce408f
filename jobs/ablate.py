"""Equal-budget curation experiments: `sigma ablate ABLATE.yaml`.

    sigma ablate configs/ablate/curation.yaml
    python -m jobs.ablate configs/ablate/curation.yaml     (the same, for `ray job submit`)

The way DCLM and FineWeb compare data recipes: the same sources curated by each variant (the
sources are read once, with the suite exclusion `decontaminate: {suite: ...}` first, so no arm
trains on suite text, and every variant curates that output with its own stages), one tokenizer
trained once on the union of the named variants' outputs, and for every variant the same model,
the same token budget (to the token: a whole number of steps, however large the variant's corpus;
a smaller corpus repeats, and its epochs are recorded) and the same seeds. An arm reads its
variant in a fixed random order of pieces of documents (jobs/ablate_order.py), so a budget
smaller than the corpus trains on a random sample of it, not on the first row groups; what each
arm read of each kind is recorded. Each arm (variant x seed) trains as a Ray task and is scored on
the frozen eval suite.

The folder:

    ablate.json              the configuration and its hash; the suite's name and content hash
    ingest/                  the sources and the suite exclusion, curated once
    variants/<name>/         each variant's curate output (manifest, shards, ledger); a variant
                             with no stages of its own is `ingest/`
    tokenizer.json           the shared tokenizer
    ordered/<name>/          each variant in the order arms read it; corpus.json: its documents,
                             pieces and tokens
    arms/<variant>-seed<k>/  the arm's training run (checkpoints, metrics.jsonl) and scores.json
    results.json, results.md, report.html    the table: mean and spread per variant and metric,
                             the difference from the baseline

Resumable: curate outputs resume by work unit, a killed arm resumes from its last checkpoint (and
trains the same steps as an uninterrupted one), and an arm whose `scores.json` is written
(atomically, last) is skipped. An arm scored on another build of the suite is scored again from
its checkpoint, without training. Variants can be added to a finished ablation: the ones it
has keep their curation and arms (the tokenizer trains on `tokenizer.variants`, not on them all).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from pipeline.config import ConfigError, JobConfig
from pipeline.progress import table_console
from pipeline.ray_session import driver_notes_to, ray_session

from jobs.ablate_config import AblateConfig, load_ablate
from jobs.ablate_report import summarise, write_results

SCORES = "scores.json"


def write_json(path: Path, obj) -> None:
    """Written whole under a temporary name, then renamed: a killed run leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def train_config(config: AblateConfig, seed: int):
    """The arm's TrainConfig: the ablation's model and settings, `max_steps` from the token budget.

    No held-out split of the variant's own data (each variant's would be different text): every
    curated document trains, and the suite is the held-out set."""
    from sigma.train import TrainConfig

    t = config.train
    try:
        base = TrainConfig.load(t.config).override(**t.overrides)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"train.config: {exc}") from None
    per_step = base.batch_size * base.sequence_length() * base.grad_accum
    if t.tokens % per_step:
        low = t.tokens // per_step * per_step
        raise ConfigError(f"train.tokens {t.tokens:,} is not a whole number of steps of {per_step:,} tokens "
                          f"(batch_size x seq_len x grad_accum): use {max(low, per_step):,} or {low + per_step:,}")
    steps = t.tokens // per_step
    if base.warmup_steps >= steps:
        raise ConfigError(f"warmup_steps {base.warmup_steps} is not below the budget's {steps} steps")
    return base.override(max_steps=steps, seed=seed, held_out_fraction=0.0)


def score_arm(run: Path, suite_definition: str, limit: int | None, device: str | None) -> dict:
    """The arm's checkpoint on the suite; the suite refuses a model whose training manifests
    overlap it. The backend is built here, not taken from the per-process cache, so a retrained
    arm is never scored with the weights of an earlier one."""
    from sigma.backends.base import EngineSpec
    from sigma.backends.sigma_engine import SigmaBackend
    from sigma.evals.suite import check_uncontaminated, load_suite, score_suite

    suite = load_suite(suite_definition)
    check_uncontaminated(str(run), suite)
    return score_suite(SigmaBackend(EngineSpec(backend="sigma", model=str(run), device=device)), suite, limit=limit)


def run_arm(arm: dict) -> dict:
    """Train one arm (resuming its run) unless its last checkpoint is at the budget's step, then
    score it on the suite and write `scores.json`. Runs as a Ray task, or in process."""
    import torch

    from jobs.ablate_order import bytes_by_kind
    from sigma.checkpoint import find_checkpoint, read_checkpoint
    from sigma.tokenizer import load_tokenizer
    from sigma.train import TrainConfig, train

    torch.set_num_threads(arm["threads"])
    run = Path(arm["run"])
    config = TrainConfig.from_dict(arm["train_config"])
    started = time.time()
    found = find_checkpoint(run)
    trained_here = found is None or read_checkpoint(found).step != config.max_steps
    if trained_here:
        train(config, [arm["data"]], run, resume=True, tokenizer=arm["tokenizer"], device=arm["device"], progress=False)
    state = read_checkpoint(run).state
    if state["tokens"] != arm["budget"]:
        raise RuntimeError(f"arm {arm['arm']} trained on {state['tokens']:,} tokens, not the budget's {arm['budget']:,}")
    train_seconds = time.time() - started
    trained_bytes = bytes_by_kind(Path(arm["data"]), load_tokenizer(arm["tokenizer"]), state["data"][0]["streams"][0],
                                  config.seed, config.lanes)
    scores = score_arm(run, arm["suite"], arm["limit"], arm["device"])
    result = {
        "arm": arm["arm"], "variant": arm["variant"], "seed": arm["seed"], "tokens": state["tokens"],
        "budget": arm["budget"], "steps": state["step"], "data": arm["data"], "corpus_tokens": arm["corpus_tokens"],
        "trained_bytes_by_kind": trained_bytes,
        "epochs": state["tokens"] / arm["corpus_tokens"], "final_loss": _last_loss(run),
        "train_config": arm["train_config"], "scoring": arm["scoring"], "scores": scores,
        "seconds": {"train": round(train_seconds, 1) if trained_here else None,
                    "score": round(time.time() - started - train_seconds, 1)},
    }
    write_json(run / SCORES, result)
    return result


def _last_loss(run: Path) -> float | None:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    losses = [json.loads(line)["loss"] for line in lines if line and "loss" in json.loads(line)]
    return losses[-1] if losses else None


def training_progress(run: Path) -> str:
    """`step N, loss L` from the arm's metrics, for the driver's progress lines."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return "starting"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    last = next((m for m in reversed(lines) if "loss" in m), None)
    return f"step {last['step']}, loss {last['loss']:.3f}" if last else "starting"


class Ablation:
    def __init__(self, config: AblateConfig, root: str | Path, progress: bool = True):
        self.config, self.root, self.progress = config, Path(root).absolute(), progress

    def say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)

    def variant_dir(self, name: str) -> Path:
        return self.root / "variants" / name

    def arm_dir(self, arm: str) -> Path:
        return self.root / "arms" / arm

    def _prepare(self, overwrite: bool, suite) -> None:
        marker = self.root / "ablate.json"
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        if marker.exists():
            saved = json.loads(marker.read_text())
            if saved["config_hash"] != self.config.output_hash():
                raise ConfigError(f"{self.root} holds an ablation of another configuration ({saved['config_hash']}, "
                                  f"this one is {self.config.output_hash()}): use --overwrite, or another output")
        elif self.root.exists() and any(self.root.iterdir()):
            raise ConfigError(f"{self.root} is not empty and holds no ablation: use --overwrite, or another output")
        write_json(marker, {"name": self.config.name, "config_hash": self.config.output_hash(),
                            "suite": {"name": suite.name, "hash": suite.hash},
                            "config": self.config.model_dump(mode="json")})

    def _curate(self, what: str, out: Path, inputs, stages) -> Path:
        from jobs.curate import curate
        from stages.presets import expand_presets

        c = self.config
        self.say(f"{what}: curating ({' -> '.join(s.name for s in expand_presets(stages))})")
        job = JobConfig(name=f"{c.name}-{out.name}", inputs=inputs, stages=stages, writer=c.writer, unit_mb=c.unit_mb,
                        ray=c.ray)
        totals = curate(job, str(out), progress=False)["totals"]
        if not totals["balanced"]:
            raise RuntimeError(f"{what}: the curate ledger does not balance (see {out})")
        if not totals["kept"]:
            raise RuntimeError(f"{what} kept no documents (see {out}/manifest.json): nothing to train on")
        self.say(f"{what}: {totals['input']:,} documents in, {totals['kept']:,} kept")
        return out

    def curate_variants(self) -> dict[str, Path]:
        """The sources are read once (`ingest/`: the sources and the suite exclusion); every variant
        then curates that output with its own stages (the exclusion again first, so each variant's
        manifest shows it). A variant with no stages of its own is the ingest output itself."""
        from pipeline.config import InputConfig

        c = self.config
        ingest = self._curate("ingest", self.root / "ingest", c.sources, c.exclusion())
        shards = InputConfig(type="parquet", name="ingest", paths=[str(ingest / "shards")])
        return {name: ingest if not stages else self._curate(f"variant {name}", self.variant_dir(name), [shards],
                                                               c.variant_stages(name))
                for name, stages in c.variants.items()}

    def tokenize(self, dirs: dict[str, Path]) -> Path:
        """One tokenizer on the union of the named variants' outputs, trained once."""
        from sigma.tokenizer import train_on_shards

        path = self.root / "tokenizer.json"
        if not path.exists():
            names = self.config.tokenizer_variants()
            self.say(f"tokenizer: training (vocab {self.config.tokenizer.vocab_size}) on {', '.join(names)}")
            train_on_shards(sorted({dirs[n] for n in names}), self.config.tokenizer.vocab_size, self.root)
        return path

    def order(self, dirs: dict[str, Path], tokenizer: Path) -> tuple[dict[str, Path], dict]:
        """Each variant in the fixed random order arms read it in (jobs/ablate_order.py), and its
        documents, pieces and tokens (counted once per ordered folder)."""
        from jobs.ablate_order import write_order
        from jobs.flywheel_report import corpus_tokens
        from sigma.tokenizer import load_tokenizer

        o = self.config.order
        counts_path = self.root / "corpus.json"
        counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
        ordered, loaded = {}, None
        for name, d in dirs.items():
            out = self.root / "ordered" / name
            if not (out / "manifest.json").exists():
                self.say(f"variant {name}: writing the training order (pieces of {o.piece_chars:,} characters)")
            ordered[name] = write_order(d, out, o.piece_chars, o.row_group_rows)
            manifest = json.loads((out / "manifest.json").read_text())
            if counts.get(name, {}).get("order") != manifest["order"]:
                loaded = loaded or load_tokenizer(tokenizer)
                counts[name] = {**corpus_tokens(out, loaded), "documents": manifest["documents"],
                                "pieces": manifest["pieces"], "bytes_by_kind": manifest["bytes_by_kind"],
                                "order": manifest["order"]}
                write_json(counts_path, counts)
        return ordered, {name: counts[name] for name in dirs}

    def arm_specs(self, dirs: dict[str, Path], tokenizer: Path, counts: dict, suite) -> list[dict]:
        c = self.config
        scoring = {"suite": {"name": suite.name, "hash": suite.hash}, "limit": c.score.limit}
        specs = []
        for arm, variant, seed in c.arm_names():
            specs.append({
                "arm": arm, "variant": variant, "seed": seed, "run": str(self.arm_dir(arm)), "data": str(dirs[variant]),
                "tokenizer": str(tokenizer), "budget": c.train.tokens,
                # as JSON reads it back (lists, not tuples), to compare with what checkpoints and scores record
                "train_config": json.loads(json.dumps(train_config(c, seed).to_dict())),
                "corpus_tokens": counts[variant]["tokens"], "suite": c.suite, "limit": c.score.limit,
                "scoring": scoring, "device": c.train.device, "threads": c.arms.num_cpus,
            })
        return specs

    def finished(self, spec: dict) -> dict | None:
        """The arm's saved result, if it was scored on this suite build with these settings."""
        path = Path(spec["run"]) / SCORES
        if not path.exists():
            return None
        result = json.loads(path.read_text())
        same = all(result.get(k) == spec[k] for k in ("scoring", "budget", "train_config", "data"))
        return result if same else None

    def check_trained_alike(self, specs: list[dict]) -> None:
        """An arm's checkpoints are of this ablation's training settings and data, or the arm would
        resume (or be scored) under a schedule or an order it did not train with."""
        from sigma.checkpoint import find_checkpoint, read_checkpoint

        def differs(spec: dict) -> bool:
            state = read_checkpoint(spec["run"]).state
            return state["train_config"] != spec["train_config"] or state.get("data_dirs") != [spec["data"]]

        other = [s["arm"] for s in specs if find_checkpoint(s["run"]) is not None and differs(s)]
        if other:
            raise ConfigError(f"arms {', '.join(other)} in {self.root / 'arms'} were trained with other training "
                              "settings (model, budget, schedule) or data: remove those arm folders, or use another "
                              "output")

    def run_arms(self, specs: list[dict]) -> list[dict]:
        import ray

        results, todo = {}, []
        for spec in specs:
            done = self.finished(spec)
            if done is not None:
                results[spec["arm"]] = done
            else:
                todo.append(spec)
        if results:
            self.say(f"arms: {len(results)} finished earlier ({', '.join(results)}), {len(todo)} to run")
        task = ray.remote(run_arm).options(num_cpus=self.config.arms.num_cpus, max_retries=0)
        queue, running = list(todo), {}
        while queue or running:
            while queue and len(running) < self.config.arms.concurrency:
                spec = queue.pop(0)
                steps = spec["train_config"]["max_steps"]
                self.say(f"arm {spec['arm']}: training {spec['budget']:,} tokens ({steps:,} steps), then scoring")
                running[task.remote(spec)] = spec
            ready, _ = ray.wait(list(running), num_returns=1, timeout=60)
            for ref in ready:
                spec = running.pop(ref)
                result = ray.get(ref)
                results[spec["arm"]] = result
                self.say(f"arm {spec['arm']}: done, {result['epochs']:.2f} epochs of its corpus, "
                         f"suite bpb {result['scores']['bpb_all']:.4f}")
            if not ready:
                for spec in running.values():
                    self.say(f"arm {spec['arm']}: {training_progress(Path(spec['run']))}")
        return [results[spec["arm"]] for spec in specs]

    def run(self, overwrite: bool = False) -> dict:
        from stages.ingest.eval_suite import ensure_suite

        train_config(self.config, self.config.seeds[0])  # a budget that is not whole steps fails before curation
        suite = ensure_suite(self.config.suite)
        self._prepare(overwrite, suite)
        with ray_session(self.config.ray), driver_notes_to(self.root / "logs" / "ray.log"):
            dirs = self.curate_variants()
            tokenizer = self.tokenize(dirs)
            ordered, counts = self.order(dirs, tokenizer)
            specs = self.arm_specs(ordered, tokenizer, counts, suite)
            self.check_trained_alike(specs)
            results = self.run_arms(specs)
        summary = summarise(self.config, results, counts)
        write_results(self.root, summary)
        return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="ablation file (YAML), e.g. configs/ablate/curation.yaml")
    parser.add_argument("--output", "-o", help="ablation folder (overrides the file's `output:`)")
    parser.add_argument("--address", help="Ray cluster address (`auto`, `ray://host:10001`); default: embedded Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the ablation folder holds and start over")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages")


def run_from_args(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jobs.ablate_report import render_table

    console = Console(stderr=True)
    try:
        config = load_ablate(args.config)
        ray = {k: v for k, v in (("address", args.address), ("num_cpus", args.num_cpus)) if v is not None}
        config = config.model_copy(update={"ray": config.ray.model_copy(update=ray)})
        output = args.output or config.output
        if not output:
            raise ConfigError("no output: give --output DIR, or `output:` in the ablation file")
        summary = Ablation(config, output, progress=not args.quiet).run(overwrite=args.overwrite)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    render_table(summary, table_console())
    console.print(f"results: {Path(output) / 'results.json'}, {Path(output) / 'report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
