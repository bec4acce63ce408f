"""The flywheel: curate -> tokenize -> train -> eval -> synthesize, round after round.

    sigma flywheel configs/loop/demo.yaml --output out/loop
    python -m jobs.flywheel configs/loop/demo.yaml --output out/loop     (the same, for `ray job submit`)

Round k:

1. curate: round k's new sources plus round k-1's synthetic rows, through one stage list, so
   synthetic rows meet the same filters, redaction and dedupe as crawled data; every stage that
   takes `existing` (exact and near dedupe) gets the earlier rounds' outputs, so nothing already
   in the corpus comes back;
2. tokenize: the tokenizer (trained on round 1's corpus, then fixed) and the corpus's tokens per
   kind; the trainer packs documents into sequences as it streams them (`sigma.packing`);
3. train: from round k-1's checkpoint (`init_from`), on every round's curated output so far;
   round 1 from random weights, or from `train.init_from` (a converted or pretrained checkpoint,
   whose model and tokenizer every round then keeps);
4. eval: the frozen eval suite (bits per byte per kind, NL -> command multiple choice), the same
   suite every round (its hash is pinned at round 1); perplexity on the round's own held-out
   data; NL -> command generation;
5. synth: a synthesis job over round k's corpus with the new model (or a fixed engine): requests
   -> `synthesize` on Ray actors that hold the engine -> synthetic rows for round k+1;
6. report: `round-k/report.md` and `report.json`.

Each round lives in `round-k/` with `manifest.json` (every step's summary, written when the step
ends) and its report. A killed loop, run again with the same command, skips the finished steps
and resumes the unfinished one where it stopped: curate and synth jobs by work unit, training
from its last checkpoint; eval and report run again whole. The rounds' table is printed at the end
and written to `rounds.json` and `rounds.md`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from pipeline.config import ConfigError, JobConfig, StageConfig
from pipeline.manifest import code_version
from pipeline.progress import table_console
from pipeline.ray_session import driver_notes_to, ray_session
from stages.presets import expand_presets
from stages.registry import STAGES

from jobs.flywheel_config import FlywheelConfig, load_flywheel
from jobs.flywheel_report import (corpus_tokens, flywheel_rounds, round_row, synth_samples, synth_summary,
                                  synthetic_fate, write_report, write_table)
from jobs.run_folder import FolderJob, claim, write_json

STEPS = ("curate", "tokenize", "train", "eval", "synth", "report")
TOKENIZER = "tokenizer.json"


class Flywheel(FolderJob):
    config: FlywheelConfig

    # -- folders and state -----------------------------------------------------------------

    def round_dir(self, k: int) -> Path:
        return self.root / f"round-{k}"

    def manifest_path(self, k: int) -> Path:
        return self.round_dir(k) / "manifest.json"

    def state(self, k: int) -> dict:
        path = self.manifest_path(k)
        if path.exists():
            return json.loads(path.read_text())
        return {"round": k, "loop": self.config.name, "config_hash": self.config.output_hash(), "steps": {}}

    def _finish_step(self, k: int, step: str, summary: dict, started: float) -> dict:
        state = self.state(k)
        state["steps"][step] = {**summary, "seconds": round(time.time() - started, 2)}
        state["code_version"] = code_version()
        write_json(self.manifest_path(k), state)
        return state

    def _prepare(self, overwrite: bool) -> None:
        claim(self.root, "loop.json", "a loop", self.config.output_hash(), overwrite=overwrite,
              record={"name": self.config.name, "config": self.config.model_dump(mode="json")})

    # -- the loop --------------------------------------------------------------------------

    def run(self, overwrite: bool = False) -> list[dict]:
        self._prepare(overwrite)
        with ray_session(self.config.ray), driver_notes_to(self.root / "logs" / "ray.log"):
            for k in range(1, self.config.rounds + 1):
                done = self.state(k)["steps"]
                for step in STEPS:
                    if step in done:
                        continue
                    self.say(f"round {k}: {step}")
                    started = time.time()
                    summary = getattr(self, f"step_{step}")(k)
                    done = self._finish_step(k, step, summary, started)["steps"]
        rows = [round_row(self.state(k), self.state(k + 1)) for k in range(1, self.config.rounds + 1)]
        write_table(self.root, rows)
        found = flywheel_rounds(self.root)
        if found:
            from pipeline.report import write_html
            from pipeline.stats import compute_stats

            write_html(compute_stats(found[0]), self.root / "report.html", rounds=found[1])
        return rows

    # -- steps -----------------------------------------------------------------------------

    def curate_dirs(self, upto: int) -> list[Path]:
        """Finished curate outputs of rounds 1..upto that kept documents."""
        out = []
        for j in range(1, upto + 1):
            summary = self.state(j)["steps"].get("curate", {})
            if summary.get("totals", {}).get("kept"):
                out.append(self.round_dir(j) / "curate")
        return out

    def curate_job(self, k: int) -> JobConfig | None:
        c = self.config
        inputs = [i.model_dump(exclude_none=True) for i in c.round_inputs(k)]
        previous = self.round_dir(k - 1) / "synth" / "shards"
        if k > 1 and previous.is_dir() and any(previous.glob("*.parquet")):
            inputs.append({"type": "parquet", "name": f"synthetic-round-{k - 1}", "paths": [str(previous)]})
        if not inputs:
            return None
        existing = [str(d) for d in self.curate_dirs(k - 1)] if c.curate.against_corpus else []
        stages = []
        for stage in expand_presets(c.curate.stages):
            options = dict(stage.options)
            cls = STAGES.get(stage.name)
            if existing and cls is not None and "existing" in inspect.signature(cls.__init__).parameters:
                options["existing"] = list(options.get("existing", [])) + existing
            stages.append(StageConfig(name=stage.name, options=options))
        return JobConfig(name=f"{c.name}-round-{k}", inputs=inputs, stages=stages, writer=c.curate.writer,
                         unit_mb=c.curate.unit_mb, ray=c.ray)

    def step_curate(self, k: int) -> dict:
        from jobs.curate import curate

        job = self.curate_job(k)
        if job is None:
            return {"skipped": "no new sources and no synthetic rows", "totals": {"input": 0, "kept": 0, "dropped": 0}}
        manifest = curate(job, str(self.round_dir(k) / "curate"), progress=False)
        if not manifest["totals"]["balanced"]:
            raise RuntimeError(f"round {k}: the curate ledger does not balance (see {self.round_dir(k)}/curate)")
        return {"output": "curate", "totals": manifest["totals"], "stages": manifest["stages"],
                "synthetic": synthetic_fate(self.round_dir(k) / "curate")}

    def tokenizer_path(self) -> Path:
        if self.config.train.init_from:
            from sigma.checkpoint import read_checkpoint
            from sigma.tokenizer import TOKENIZER_FILE

            return read_checkpoint(self.config.train.init_from).path / TOKENIZER_FILE
        return Path(self.config.tokenizer.path) if self.config.tokenizer.path else self.root / TOKENIZER

    def train_config(self):
        """The round's training settings; with `train.init_from`, that checkpoint's model."""
        from sigma.checkpoint import read_checkpoint
        from sigma.train import TrainConfig

        t = self.config.train
        settings = {**t.overrides, "max_steps": t.steps}
        if t.init_from:
            settings["model"] = read_checkpoint(t.init_from).state["model_config"]
        return TrainConfig.load(t.config).override(**settings)

    def step_tokenize(self, k: int) -> dict:
        from sigma.tokenizer import load_tokenizer, train_on_shards

        path = self.tokenizer_path()
        if not path.exists():
            dirs = self.curate_dirs(k)
            if not dirs:
                raise RuntimeError(f"round {k}: no curated documents to train a tokenizer on")
            train_on_shards(dirs, self.config.tokenizer.vocab_size, self.root)
        curated = self.round_dir(k) / "curate"
        counts = corpus_tokens(curated, load_tokenizer(path)) if curated in self.curate_dirs(k) else {}
        return {"tokenizer": str(path), **counts}

    def step_train(self, k: int) -> dict:
        from sigma.metrics import read_metrics
        from sigma.packing import NoDocumentsError
        from sigma.train import train

        t = self.config.train
        config = self.train_config()
        data = self.curate_dirs(k) if t.data == "all" else self.curate_dirs(k)[-1:]
        if not data:
            raise RuntimeError(f"round {k}: nothing to train on")
        run = self.round_dir(k) / "train"
        init = self.round_dir(k - 1) / "train" if k > 1 else t.init_from
        try:
            if t.ray:
                from sigma.ray_train import train_on_ray

                train_on_ray(config, data, run, t.ray, resume=True, tokenizer=self.tokenizer_path(),
                             progress=self.progress, init_from=init)
            else:
                train(config, data, run, resume=True, tokenizer=self.tokenizer_path(), device=t.device,
                      progress=self.progress, init_from=init)
        except NoDocumentsError as exc:
            raise NoDocumentsError(f"round {k}: its curation left nothing to train on: {exc}") from None
        metrics = read_metrics(run)
        losses = [m for m in metrics if "loss" in m]
        evals = [m for m in metrics if "eval_loss" in m]
        return {"output": "train", "data": [str(d) for d in data], "init_from": str(init) if init else None,
                "steps": config.max_steps, "tokens": losses[-1]["tokens"] if losses else 0,
                "loss": losses[-1]["loss"] if losses else None,
                "eval_loss_start": evals[0]["eval_loss"] if evals else None,
                "eval_loss": evals[-1]["eval_loss"] if evals else None}

    def engine_spec(self, k: int):
        from sigma.backends.base import EngineSpec

        s = self.config.synth
        if s.engine == "round":
            return EngineSpec(backend="sigma", model=str(self.round_dir(k) / "train"), device=self.config.train.device,
                              max_batch_size=s.batch_size)
        return EngineSpec.model_validate(s.engine)

    def pinned_suite(self):
        """The eval suite, checked to be the one round 1 was scored on."""
        from stages.ingest.eval_suite import ensure_suite

        s = self.config.eval.suite
        suite = ensure_suite(s.definition, build_dir=s.build_dir, progress=self.progress)
        first = self.state(1)["steps"].get("eval", {}).get("suite")
        if first and first["hash"] != suite.hash:
            raise ConfigError(f"the eval suite changed since round 1 (round 1: {first['hash'][:12]}, now "
                              f"{suite.hash[:12]} at {suite.path}): rounds on different suites do not compare; restore "
                              f"that build or start the loop again (--overwrite)")
        return suite

    def step_eval(self, k: int) -> dict:
        from sigma.backends.base import EngineSpec, load_backend
        from sigma.evals.nl2cmd import evaluate_nl2cmd
        from sigma.evals.perplexity import evaluate_perplexity
        from sigma.evals.suite import check_uncontaminated, score_suite

        e = self.config.eval
        model = str(self.round_dir(k) / "train")
        backend = load_backend(EngineSpec(backend="sigma", model=model, device=self.config.train.device))
        result = {}
        if e.suite is not None:
            suite = self.pinned_suite()
            check_uncontaminated(model, suite)
            result["suite"] = score_suite(backend, suite, limit=e.suite.limit)
        if e.perplexity is not None:
            fraction = self.train_config().held_out_fraction
            result["perplexity"] = evaluate_perplexity(backend, self.curate_dirs(k), held_out_fraction=fraction,
                                                       max_documents=e.perplexity.max_documents,
                                                       max_chars=e.perplexity.max_chars)
        if e.nl2cmd is not None:
            n = e.nl2cmd
            result["nl2cmd"] = evaluate_nl2cmd(backend, n.data, shots=n.shots, limit=n.limit, seed=n.seed,
                                               max_new_tokens=n.max_new_tokens)
        write_json(self.round_dir(k) / "eval.json", result)
        summary = {"output": "eval.json", "suite": None, "perplexity": None, "nl2cmd": None}
        if "suite" in result:
            r = result["suite"]
            summary["suite"] = {**r["suite"], "bpb": r["bpb"], "bpb_all": r["bpb_all"], "nl2cmd_bpb": r["nl2cmd_bpb"],
                                "mc": r["mc"]}
        if "perplexity" in result:
            ppl = result["perplexity"]
            summary["perplexity"] = {**{kind: s["perplexity"] for kind, s in ppl["kinds"].items()},
                                     "all": ppl["all"]["perplexity"]}
        if "nl2cmd" in result:
            summary["nl2cmd"] = result["nl2cmd"]["scores"]
        return summary

    def synth_job(self, k: int) -> JobConfig:
        s = self.config.synth
        request = {"type": "synth_requests", "name": f"requests-round-{k}", "corpus": [str(self.round_dir(k) / "curate")],
                   "tasks": s.tasks, "round": k, "per_task": s.per_task, "seed": s.seed, "unit_requests": s.unit_requests}
        if s.prompt_dir:
            request["prompt_dir"] = s.prompt_dir
        synthesize = {"engine": self.engine_spec(k).model_dump(exclude_none=True), "temperature": s.temperature,
                      "top_k": s.top_k, "top_p": s.top_p, "seed": s.seed, "batch_size": s.batch_size,
                      "max_new_tokens": s.max_new_tokens, "max_attempts": s.max_attempts, "prompt_dir": s.prompt_dir}
        stages = [StageConfig(name="synthesize", options={k_: v for k_, v in synthesize.items() if v is not None})]
        return JobConfig(name=f"{self.config.name}-round-{k}-synth", inputs=[request], stages=stages + list(s.stages),
                         writer=s.writer, ray=self.config.ray)

    def step_synth(self, k: int) -> dict:
        from jobs.curate import curate

        if self.round_dir(k) / "curate" not in self.curate_dirs(k):
            return {"skipped": "no curated documents this round"}
        out = self.round_dir(k) / "synth"
        manifest = curate(self.synth_job(k), str(out), progress=False)
        if not manifest["totals"]["balanced"]:
            raise RuntimeError(f"round {k}: the synthesis ledger does not balance (see {out})")
        return {"output": "synth", "engine": self.engine_spec(k).label(), "totals": manifest["totals"],
                "tasks": synth_summary(out), "samples": synth_samples(out)}

    def step_report(self, k: int) -> dict:
        write_report(self.round_dir(k), self.state(k))
        return {"output": "report.md"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="loop file (YAML), e.g. configs/loop/demo.yaml")
    parser.add_argument("--output", "-o", help="loop folder (overrides the file's `output:`)")
    parser.add_argument("--rounds", type=int, help="run this many rounds (extends a finished loop)")
    parser.add_argument("--address", help="Ray cluster address (`auto`, `ray://host:10001`); default: embedded Ray")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="discard what the loop folder holds and start over")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages")


def run_from_args(args: argparse.Namespace) -> int:
    from rich.console import Console

    from jobs.flywheel_report import render_table
    from sigma.packing import NoDocumentsError

    console = Console(stderr=True)
    try:
        config = load_flywheel(args.config)
        updates = {"rounds": args.rounds} if args.rounds else {}
        ray = {k: v for k, v in (("address", args.address), ("num_cpus", args.num_cpus)) if v is not None}
        config = config.model_copy(update={**updates, "ray": config.ray.model_copy(update=ray)})
        output = args.output or config.output
        if not output:
            raise ConfigError("no output: give --output DIR, or `output:` in the loop file")
        rows = Flywheel(config, output, progress=not args.quiet).run(overwrite=args.overwrite)
    except (ConfigError, NoDocumentsError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    render_table(rows, table_console())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.flywheel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
