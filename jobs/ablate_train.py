"""An ablation's train phase: every arm of a bundle trained, then scored on the bundle's suite.

    sigma ablate train out/ablate-curation/bundle                    # where it was prepared
    sigma ablate train BUNDLE --out RUNS --results FILE --time-limit 330    # on a GPU machine

Runs on whatever device is there (CUDA: bf16 autocast and torch.compile, as `sigma train` does;
else the CPU) and needs only the bundle (jobs/ablate_bundle.py), torch, tokenizers and numpy: no
Ray, no curation outputs. Where Ray is installed and more than one arm may run at once, each arm
is a Ray task (with a GPU where there are GPUs); else the arms run one after the other in this
process.

Each arm's result is written as `RUNS/arms/ARM/scores.json` and appended as one JSON line to
`RUNS/results.jsonl` (and to `--results`) the moment it is measured, so a run stopped by a
time limit or a kill loses only the arm it was in. A killed arm resumes from its last checkpoint
(and trains the same steps as an uninterrupted one); a finished arm is skipped. `--time-limit`
starts no arm that the arms so far say would not end in time.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import time
from pathlib import Path

from configs import ConfigError

from jobs.ablate_arms import arm_specs
from jobs.run_folder import write_json

SCORES = "scores.json"
RESULTS = "results.jsonl"
SMOKE = {"batch_size": 2, "seq_len": 32, "warmup_steps": 1, "save_every": 2, "log_every": 1, "compile": False}
SMOKE_STEPS, SMOKE_LIMIT = 3, 3


def smoke_spec(spec: dict) -> dict:
    """The arm at smoke size: its model and code paths, a few steps of a few tokens."""
    config = {**spec["train_config"], **SMOKE}
    config["seq_len"] = min(SMOKE["seq_len"], spec["train_config"].get("seq_len") or SMOKE["seq_len"])
    config["max_steps"] = SMOKE_STEPS
    return {**spec, "train_config": config, "budget": SMOKE_STEPS * config["batch_size"] * config["seq_len"]}


def run_arm(job: dict) -> dict:
    """Train one arm (resuming its run) unless its last checkpoint is at the budget's step, score it
    on the bundle's suite and write `scores.json`. Runs in process or as a Ray task."""
    import torch

    from sigma.averaging import ema_checkpoint
    from sigma.backends.base import EngineSpec
    from sigma.backends.sigma_engine import SigmaBackend
    from sigma.checkpoint import find_checkpoint, read_checkpoint
    from sigma.evals.suite import Suite, check_uncontaminated, score_suite
    from sigma.token_stream import TokenWindows
    from sigma.train import TrainConfig, train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    spec, bundle, run = job["spec"], Path(job["bundle"]), Path(job["run"])
    config = TrainConfig.from_dict(spec["train_config"])
    data = bundle / "streams" / spec["variant"]
    started = time.time()
    found = find_checkpoint(run)
    trained_here = found is None or read_checkpoint(found).step != config.max_steps
    if trained_here:
        write_json(run / "arm.json", spec)  # what the checkpoints are of, for a later run to check
        if job.get("ray"):
            from sigma.ray_train import RayWorkers, train_on_ray

            train_on_ray(config, [data], run, RayWorkers(**job["ray"]), resume=True, tokenizer=bundle / "tokenizer.json",
                         progress=False)
        else:
            train(config, [data], run, resume=True, tokenizer=bundle / "tokenizer.json", device=job["device"],
                  progress=False)
    state = read_checkpoint(run).state
    if state["tokens"] != spec["budget"]:
        raise RuntimeError(f"arm {spec['arm']} trained on {state['tokens']:,} tokens, not the budget's {spec['budget']:,}")
    train_seconds = time.time() - started
    curve = loss_curve(run)
    ranks = state["world_size"]
    windows = [TokenWindows(data, config.sequence_length(), seed=config.seed, rank=r, world_size=ranks) for r in range(ranks)]
    read: dict[str, int] = {}
    for rank, rank_windows in enumerate(windows):
        for group, count in rank_windows.tokens_read_by_group(state["data"][rank]["streams"][0]).items():
            read[group] = read.get(group, 0) + count
    read = dict(sorted(read.items()))
    scored = ema_checkpoint(run) if config.ema_decay else run
    suite = Suite.open(bundle / "suite")
    check_uncontaminated(str(scored), suite)
    scores = score_suite(SigmaBackend(EngineSpec(backend="sigma", model=str(scored), device=job["device"])), suite,
                         limit=job["limit"])
    result = {
        "arm": spec["arm"], "variant": spec["variant"], "seed": spec["seed"], "lr_scale": spec["lr_scale"],
        "sample": spec["sample"],
        "tokens": state["tokens"], "budget": spec["budget"], "steps": state["step"],
        "sample_tokens": len(windows[0].folder.tokens), "epochs": state["tokens"] / len(windows[0].folder.tokens),
        "trained_tokens_by_kind": read, "final_loss": curve[-1][1] if curve else None,
        "loss_curve": curve, "weights": "ema" if config.ema_decay else "last",
        "train_config": spec["train_config"], "scoring": {"suite": suite.describe(), "limit": job["limit"]},
        "smoke": job["smoke"], "device": str(job["device"] or ("cuda" if torch.cuda.is_available() else "cpu")),
        "scores": scores,
        "seconds": {"train": round(train_seconds, 1) if trained_here else None,
                    "score": round(time.time() - started - train_seconds, 1)},
    }
    write_json(run / SCORES, result)
    return result


def loss_curve(run: Path) -> list[tuple[int, float]]:
    """(tokens, training loss) of every logged step."""
    from sigma.metrics import read_metrics

    return [(m["tokens"], round(m["loss"], 5)) for m in read_metrics(run) if "loss" in m]


def training_progress(run: Path) -> str:
    """`step N, loss L` from the arm's metrics, for progress lines."""
    from sigma.metrics import read_metrics

    last = next((m for m in reversed(read_metrics(run)) if "loss" in m), None)
    return f"step {last['step']}, loss {last['loss']:.3f}" if last else "starting"


def read_results(*paths: Path) -> dict[str, dict]:
    """Arm results from results files, by arm (a later line of an arm replaces an earlier one)."""
    results = {}
    for path in paths:
        if Path(path).exists():
            for line in Path(path).read_text().splitlines():
                if line.strip():
                    result = json.loads(line)
                    results[result["arm"]] = result
    return results


class ArmRunner:
    """Runs a bundle's arms into ``out`` (``out/arms/ARM``, ``out/results.jsonl``)."""

    def __init__(self, bundle: str | Path, out: str | Path | None = None, *, device: str | None = None,
                 results: str | Path | None = None, only: list[str] | None = None, lr_scales: list[float] | None = None,
                 time_limit: float | None = None, smoke: bool = False, use_ray: bool | None = None,
                 ray: dict | None = None, progress=print):
        from jobs.ablate_bundle import verify_bundle

        self.bundle = Path(bundle).absolute()
        self.body = verify_bundle(self.bundle)
        self.settings = self.body["settings"]
        self.out = Path(out).absolute() if out else self.bundle.parent
        self.device = device or self.settings.get("device")
        self.results_files = [self.out / (f"smoke-{RESULTS}" if smoke else RESULTS)] + ([Path(results)] if results else [])
        self.time_limit, self.smoke, self.say = time_limit, smoke, progress
        specs = arm_specs(self.settings, lr_scales)
        if only:
            specs = [s for s in specs if any(fnmatch.fnmatch(s["arm"], p) for p in only)]
            if not specs:
                raise ConfigError(f"--only {' '.join(only)} matches no arm of {self.bundle}")
        self.specs = [smoke_spec(s) for s in specs] if smoke else specs
        self.use_ray, self.ray = use_ray, ray or {}

    def arm_dir(self, arm: str) -> Path:
        return self.out / ("smoke-arms" if self.smoke else "arms") / arm

    def job(self, spec: dict) -> dict:
        limit = SMOKE_LIMIT if self.smoke else self.settings["score"]["limit"]
        return {"spec": spec, "bundle": str(self.bundle), "run": str(self.arm_dir(spec["arm"])), "device": self.device,
                "threads": self.settings["arms"]["num_cpus"], "limit": limit, "smoke": self.smoke,
                "ray": self.settings.get("ray")}

    def finished(self, spec: dict) -> dict | None:
        """The arm's saved result, if it was scored on this bundle's suite with these settings."""
        path = self.arm_dir(spec["arm"]) / SCORES
        if not path.exists():
            return None
        result = json.loads(path.read_text())
        same = all(result.get(k) == spec[k] for k in ("train_config", "budget", "sample")) and \
            result.get("scoring", {}).get("suite") == self.body["suite"]
        return result if same else None

    def check_trained_alike(self) -> None:
        """An arm's checkpoints are of these training settings and this sample, or it would resume
        (or be scored) under a schedule or on data it did not train with."""
        from sigma.checkpoint import find_checkpoint

        def differs(spec: dict) -> bool:
            saved = self.arm_dir(spec["arm"]) / "arm.json"
            before = json.loads(saved.read_text()) if saved.exists() else {}
            return any(before.get(k) != spec[k] for k in ("train_config", "sample"))

        other = [s["arm"] for s in self.specs if find_checkpoint(self.arm_dir(s["arm"])) is not None and differs(s)]
        if other:
            raise ConfigError(f"arms {', '.join(other)} in {self.out} were trained with other training settings (model, "
                              "budget, schedule) or data: remove those arm folders, or use another --out")

    def record(self, result: dict) -> None:
        line = json.dumps(result, sort_keys=True) + "\n"
        for path in self.results_files:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(line)
                f.flush()

    def run(self) -> list[dict]:
        self.check_trained_alike()
        done, todo = {}, []
        for spec in self.specs:
            result = self.finished(spec)
            if result is not None:
                done[spec["arm"]] = result
            else:
                todo.append(spec)
        if done:
            self.say(f"arms: {len(done)} finished earlier, {len(todo)} to run")
        use_ray = self.use_ray
        if self.settings.get("ray"):  # each arm is a Ray Train run of its own workers, one arm at a time
            use_ray = False
        elif use_ray is None:
            use_ray = _ray_available() and self.settings["arms"]["concurrency"] > 1 and len(todo) > 1
        started = time.time()
        with self._ray_train_session() if self.settings.get("ray") and todo else contextlib.nullcontext():
            for result in (self._run_ray(todo, started) if use_ray else self._run_local(todo, started)):
                done[result["arm"]] = result
                self.record(result)
                self.say(f"arm {result['arm']}: done, {result['epochs']:.2f} epochs of its sample, suite bpb "
                         f"{result['scores']['bpb_all']:.4f} ({result['seconds']['train'] or 0:.0f} s training)")
        left = [s["arm"] for s in self.specs if s["arm"] not in done]
        if left:
            self.say(f"time limit: {len(left)} arm(s) not run ({', '.join(left)}); run the same command again to go on")
        return [done[s["arm"]] for s in self.specs if s["arm"] in done]

    def _ray_train_session(self):
        """The Ray (the ablation's `ray:`) that every arm's Ray Train workers run on."""
        from pipeline.config import RayConfig
        from pipeline.ray_session import ray_session

        return ray_session(RayConfig(**self.ray), self.out / "logs" / "ray.log")

    def _fits(self, started: float, longest: float) -> bool:
        return self.time_limit is None or time.time() - started + longest <= self.time_limit

    def _run_local(self, todo: list[dict], started: float):
        longest = 0.0
        for spec in todo:
            if not self._fits(started, longest):
                return
            begun = time.time()
            self.say(f"arm {spec['arm']}: training {spec['budget']:,} tokens "
                     f"({spec['train_config']['max_steps']:,} steps), then scoring")
            yield run_arm(self.job(spec))
            longest = max(longest, time.time() - begun)

    def _run_ray(self, todo: list[dict], started: float):
        import ray

        from pipeline.config import RayConfig
        from pipeline.ray_session import ray_session

        arms = self.settings["arms"]
        with ray_session(RayConfig(**self.ray), self.out / "logs" / "ray.log"):
            gpus = 1 if ray.cluster_resources().get("GPU") else 0
            task = ray.remote(run_arm).options(num_cpus=arms["num_cpus"], num_gpus=gpus, max_retries=0)
            queue, running, longest = list(todo), {}, 0.0
            while queue or running:
                while queue and len(running) < arms["concurrency"] and self._fits(started, longest):
                    spec = queue.pop(0)
                    self.say(f"arm {spec['arm']}: training {spec['budget']:,} tokens "
                             f"({spec['train_config']['max_steps']:,} steps), then scoring")
                    running[task.remote(self.job(spec))] = (spec, time.time())
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1, timeout=60)
                for ref in ready:
                    spec, begun = running.pop(ref)
                    longest = max(longest, time.time() - begun)
                    yield ray.get(ref)
                if not ready:
                    for spec, _ in running.values():
                        self.say(f"arm {spec['arm']}: {training_progress(self.arm_dir(spec['arm']))}")


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True
