"""Equal-budget curation experiments: `sigma ablate ABLATE.yaml`, or its phases one by one.

    sigma ablate configs/ablate/curation.yaml                # prepare, train, report
    sigma ablate prepare configs/ablate/curation-gpu.yaml    # here: curation, tokenizer, bundle
    sigma ablate train out/ablate-curation-gpu/bundle        # anywhere: no Ray, no curation outputs
    sigma ablate report out/ablate-curation-gpu/bundle
    python -m jobs.ablate configs/ablate/curation.yaml       (the same, for `ray job submit`)

The way DCLM and FineWeb compare data recipes: the same sources curated by each variant (the
sources are read once, with the suite exclusion `decontaminate: {suite: ...}` first, so no arm
trains on suite text, and every variant curates that output with its own stages), one tokenizer
trained once on the union of the named variants' outputs, and for every variant the same model,
the same token budget (to the token: a whole number of steps) and the same seeds. An arm reads a
sample of its variant: the first `bundle.tokens_per_variant` tokens of a fixed random order of
pieces of documents (jobs/ablate_order.py), the same number for every variant, so a budget larger
than the sample repeats it the same number of times in every arm. Each arm (variant x seed x
learning-rate scale) is scored on the frozen eval suite, on the moving average of its weights.

The ablation file's keys (`configs/ablate/curation.yaml` is an example; jobs/ablate_config.py
has each one's meaning): `name`, `output`, `suite`, `sources` (inputs as in a job file),
`variants` (name -> stage list; `[]` is the ingest output itself), `baseline`, `tokenizer`
(`vocab_size`, `variants`), `order` (`piece_chars`), `bundle` (`tokens_per_variant`, `max_mib`),
`train` (`config`, `overrides`, `tokens`, `lr_scales`, `device`), `seeds`, `score` (`limit`,
`ema_decay`, `bootstrap`), `arms` (`concurrency`, `num_cpus`), `writer`, `unit_mb`, `ray`.

The folder:

    ablate.json              the configuration and its hash; the suite's name and content hash
    ingest/                  the sources and the suite exclusion, curated once
    variants/<name>/         each variant's curate output (manifest, shards, ledger); a variant
                             with no stages of its own is `ingest/`
    tokenizer.json           the shared tokenizer
    bundle/                  what the arms need and nothing else (jobs/ablate_bundle.py)
    arms/<arm>/              the arm's training run (checkpoints, metrics.jsonl, ema/) and scores.json
    results.jsonl            every arm's result, appended as it is measured
    results.json, results.md, report.html    the tables (jobs/ablate_report.py)

Resumable: curate outputs resume by work unit, a killed arm resumes from its last checkpoint (and
trains the same steps as an uninterrupted one), and an arm whose `scores.json` is written
(atomically, last) is skipped. Variants can be added to a finished ablation: the ones it has keep
their curation (the tokenizer trains on `tokenizer.variants`, not on them all); the bundle is
written again, and arms whose sample did not change keep their results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import ConfigError, JobConfig
from pipeline.progress import table_console
from pipeline.ray_session import driver_notes_to, ray_session

from jobs.ablate_config import AblateConfig, load_ablate
from jobs.run_folder import FolderJob, claim


class Ablation(FolderJob):
    config: AblateConfig

    def variant_dir(self, name: str) -> Path:
        return self.root / "variants" / name

    def _prepare(self, overwrite: bool, suite) -> None:
        claim(self.root, "ablate.json", "an ablation", self.config.output_hash(), overwrite=overwrite,
              record={"name": self.config.name, "suite": {"name": suite.name, "hash": suite.hash},
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

    def prepare(self, overwrite: bool = False) -> Path:
        """Curate the variants, train the tokenizer and write the bundle (`bundle/`)."""
        from jobs.ablate_bundle import write_bundle
        from jobs.ablate_arms import train_config
        from stages.ingest.eval_suite import ensure_suite

        c = self.config
        train_config(c.train.config, c.train.overrides, c.train.tokens, c.seeds[0],  # fails before curation
                     c.train.ray.workers if c.train.ray else 1)
        suite = ensure_suite(c.suite)
        self._prepare(overwrite, suite)
        with ray_session(c.ray), driver_notes_to(self.root / "logs" / "ray.log"):
            dirs = self.curate_variants()
            tokenizer = self.tokenize(dirs)
        return write_bundle(self.root, dirs, tokenizer, suite, c, progress=self.say)

    def run(self, overwrite: bool = False) -> dict:
        """prepare, train, report."""
        from jobs.ablate_report import report
        from jobs.ablate_train import ArmRunner

        bundle = self.prepare(overwrite)
        ArmRunner(bundle, self.root, ray=self.config.ray.model_dump(exclude_none=True), progress=self.say).run()
        return report(bundle, self.root)


PHASES = ("run", "prepare", "train", "report")


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="ablation file (YAML), e.g. configs/ablate/curation.yaml")
    parser.add_argument("--output", "-o", help="ablation folder (overrides the file's `output:`)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the ablation folder holds and start over")


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray cluster address (`auto`, `ray://host:10001`); default: embedded Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: the file's train.device, else cuda if there is one)")
    parser.add_argument("--results", metavar="FILE", help="also append each arm's result here, the moment it is measured")
    parser.add_argument("--only", nargs="+", metavar="PATTERN", help="run only the arms matching these (`full-*`)")
    parser.add_argument("--lr-scales", nargs="+", type=float, metavar="X",
                        help="train the arms at these multiples of the learning rate instead (e.g. 1 0.25)")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="start no arm that the arms so far say would end after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="every arm at smoke size (a few steps, a few suite items): "
                        "the code paths on a CPU, into smoke-arms/ and smoke-results.jsonl")
    parser.add_argument("--no-ray", action="store_true", help="run the arms in this process even where Ray is installed")


def register(sub) -> None:
    parser = sub.add_parser(
        "ablate", help="compare curation recipes: the same model and token budget on each, scored on the eval suite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare curation recipes the way DCLM and FineWeb do, in three phases:\n\n"
        "  prepare FILE    curate the sources with each variant's stages (every variant first excludes the\n"
        "                  eval suite's text), train one tokenizer, and write the bundle: each variant's\n"
        "                  sample as token ids, the tokenizer, the suite and the arms (FOLDER/bundle)\n"
        "  train BUNDLE    train every arm (variant x seed) on exactly the same number of tokens, on CUDA\n"
        "                  (bf16, compiled) or the CPU, with no Ray needed; score each on the suite\n"
        "  report BUNDLE   mean +- sd per variant and metric, the difference from the baseline with its\n"
        "                  95% paired bootstrap interval; results.json, results.md, report.html\n\n"
        "`sigma ablate FILE` runs all three. Killed, any phase run again goes on where it stopped: curation\n"
        "by work unit, an arm from its last checkpoint; finished arms are skipped.",
        epilog="examples:\n  sigma ablate configs/ablate/curation.yaml\n"
        "  sigma ablate prepare configs/ablate/curation-gpu.yaml\n"
        "  sigma ablate train out/ablate-curation-gpu/bundle --time-limit 330 --results gpu.jsonl\n"
        "  sigma ablate train out/ablate-curation-gpu/bundle --smoke     # the GPU run's code paths, on a CPU\n"
        "  sigma ablate report out/ablate-curation-gpu/bundle --results gpu.jsonl")
    phases = parser.add_subparsers(dest="phase", metavar="PHASE", required=True)
    p = phases.add_parser("run", help="prepare, train and report (`sigma ablate FILE` is the same)")
    _file_arguments(p)
    _ray_arguments(p)
    p = phases.add_parser("prepare", help="curate the variants, train the tokenizer, write the bundle")
    _file_arguments(p)
    _ray_arguments(p)
    p = phases.add_parser("train", help="train and score a bundle's arms (no Ray needed)")
    p.add_argument("bundle", help="a bundle folder (`sigma ablate prepare` writes FOLDER/bundle)")
    p.add_argument("--output", "--out", dest="out", help="where arms/ and results.jsonl go (default: the folder that holds the bundle)")
    _train_arguments(p)
    _ray_arguments(p)
    p = phases.add_parser("report", help="the table of a bundle's finished arms")
    p.add_argument("bundle", help="a bundle folder")
    p.add_argument("--output", "--out", dest="out", help="where the arms' results are and the report goes (default: the bundle's folder)")
    p.add_argument("--results", nargs="+", default=[], metavar="FILE", help="more results files (from another machine)")
    p.add_argument("--smoke", action="store_true", help="the smoke-size arms' table")
    parser.set_defaults(func=run_from_args)


def with_phase(argv: list[str]) -> list[str]:
    """`ablate FILE ...` is `ablate run FILE ...`."""
    at = argv.index("ablate") + 1 if "ablate" in argv else 0
    if at < len(argv) and argv[at] not in PHASES and not argv[at].startswith("-"):
        return [*argv[:at], "run", *argv[at:]]
    return argv


def _ray(args) -> dict:
    return {k: v for k, v in (("address", getattr(args, "address", None)), ("num_cpus", getattr(args, "num_cpus", None)))
            if v is not None}


def _ablation(args) -> Ablation:
    config = load_ablate(args.config)
    config = config.model_copy(update={"ray": config.ray.model_copy(update=_ray(args))})
    output = args.output or config.output
    if not output:
        raise ConfigError("no output: give --output DIR, or `output:` in the ablation file")
    return Ablation(config, output, progress=not args.quiet)


def run_from_args(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jobs.ablate_report import render_table, report
    from jobs.ablate_train import ArmRunner

    console = Console(stderr=True)
    say = (lambda message: None) if getattr(args, "quiet", False) else \
        (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        if args.phase == "prepare":
            bundle = _ablation(args).prepare(overwrite=args.overwrite)
            console.print(f"bundle: {bundle}")
            return 0
        if args.phase == "run":
            ablation = _ablation(args)
            summary, out = ablation.run(overwrite=args.overwrite), ablation.root
        elif args.phase == "train":
            runner = ArmRunner(args.bundle, args.out, device=args.device, results=args.results, only=args.only,
                               lr_scales=args.lr_scales, time_limit=args.time_limit, smoke=args.smoke,
                               use_ray=False if args.no_ray else None, ray=_ray(args), progress=say)
            runner.run()
            summary, out = report(args.bundle, runner.out, smoke=args.smoke), runner.out
        else:
            out = Path(args.out) if args.out else Path(args.bundle).parent
            summary = report(args.bundle, out, smoke=args.smoke, extra=[Path(p) for p in args.results])
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    for table in summary["tables"]:
        render_table(table, table_console())
    prefix = "smoke-" if getattr(args, "smoke", False) else ""
    console.print(f"results: {out / f'{prefix}results.json'}, {out / f'{prefix}report.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(with_phase(["ablate", *(sys.argv[1:] if argv is None else argv)]))
    return run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
