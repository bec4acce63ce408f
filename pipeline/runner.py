"""The runner: plans work units, runs map segments and global stages on Ray, resumes, and
writes the manifest.

Map segments run as Ray Data `map_batches` over work units (tasks, or a pool of actors where a
stage's set-up is costly). Global stages decide over Ray datasets of their signals with shuffles,
and their decisions are applied per unit in the next segment. Every unit's output and every global
stage's decisions are written as a whole with a done marker, so a killed job, run again on the
same output, picks up where it stopped and ends with the same shards.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipeline.config import ConfigError, JobConfig
from pipeline.decisions import ApplyDecisions, write_unit_decisions
from pipeline.manifest import build_manifest, declared, write_manifest
from pipeline.progress import Progress
from pipeline.schema import WORK_SCHEMA, public_schema
from pipeline.segment import Segment, WriterSettings, run_unit
from pipeline.source import Source
from pipeline.stage import GlobalStage, Resources, Stage

log = logging.getLogger(__name__)


@dataclass
class Job:
    config: JobConfig
    sources: list[Source]
    stages: list[Stage | GlobalStage]
    root: Path
    manifest_extra: dict = field(default_factory=dict)  # set in the manifest as they are (refilter's parent)


class UnitWorker:
    """Runs units of one segment; as a Ray actor it keeps the stages' set-up between units."""

    def __init__(self, segment: Segment):
        self.segment = segment
        segment.setup()

    def __call__(self, batch: dict) -> dict:
        reports = [run_unit(self.segment, int(u), json.loads(p)) for u, p in zip(batch["unit"], batch["payload"])]
        return {"report": [json.dumps(r) for r in reports]}


def _run_units_task(batch: dict, segment: Segment) -> dict:
    return UnitWorker(segment)(batch)


def _worker_class(segment: Segment) -> type:
    """A UnitWorker bound to `segment`, so the actor pool is given no constructor arguments: Ray
    would keep them in the object store, where an actor restart cannot count on finding them."""

    class SegmentWorker(UnitWorker):
        def __init__(self):
            super().__init__(segment)

    return SegmentWorker


def check_stages(stages: list[Stage | GlobalStage]) -> None:
    """Before any work: each stage's options can work, and the columns it reads are written by an
    earlier stage. A mistake here is a ConfigError naming the stage, not a run that drops every
    document as `stage_error`."""
    written = set(WORK_SCHEMA.names)
    for index, stage in enumerate(stages):
        where = f"stage {stage.name} (#{index})"
        try:
            stage.check()
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        missing = [c for c in stage.requires() if c not in written]
        if missing:
            raise ConfigError(f"{where} needs the column(s) {', '.join(missing)}, which no earlier stage writes: "
                              "put the stages that write them before it")
        written |= set(stage.columns())


def plan_segments(job: Job) -> list[Segment | GlobalStage]:
    """Cut the stage list into map segments, with each global stage between two of them."""
    w = job.config.writer
    settings = WriterSettings(w.shard_max_rows, int(w.shard_max_mb * (1 << 20)), w.compression, w.row_group_rows,
                              w.rejects, w.rejects_rate)
    plan: list[Segment | GlobalStage] = []
    stored = {name: dtype for source in job.sources for name, dtype in source.columns().items()}
    fields = list(WORK_SCHEMA) + [pa.field(n, t) for n, t in stored.items() if n not in WORK_SCHEMA.names]
    current: list[Stage] = []

    def close(signal_of: GlobalStage | None, final: bool) -> Segment:
        for stage in current + ([signal_of] if signal_of else []):
            for name, dtype in stage.columns().items():
                if name not in [f.name for f in fields]:
                    fields.append(pa.field(name, dtype))
        schema = pa.schema(fields)
        seg = Segment(len([p for p in plan if isinstance(p, Segment)]), job.root, list(current),
                      public_schema(schema) if final else schema,
                      sources=job.sources if not plan else None, signal_of=signal_of, final=final,
                      writer=settings, max_error_rate=job.config.max_stage_error_rate)
        current.clear()
        return seg

    for stage in job.stages:
        if isinstance(stage, GlobalStage):
            seg = close(stage, final=False)
            plan += [seg, stage]
            current.append(ApplyDecisions(stage.name, _decisions_dir(job.root, seg.index, stage)))
        else:
            current.append(stage)
    plan.append(close(None, final=True))
    return plan


def _decisions_dir(root: Path, after_segment: int, stage: GlobalStage) -> Path:
    return root / "_work" / f"g{after_segment}-{stage.name}"


def segment_resources(segment: Segment) -> Resources:
    stages = list(segment.stages) + ([segment.signal_of] if segment.signal_of else [])
    res = [s.resources for s in stages] or [Resources()]
    concurrency = [r.concurrency for r in res if r.concurrency]
    return Resources(num_cpus=max(r.num_cpus for r in res), num_gpus=max(r.num_gpus for r in res),
                     concurrency=min(concurrency) if concurrency else None, actor=any(r.actor for r in res))


class Runner:
    def __init__(self, job: Job, progress: Progress | None = None):
        self.job, self.root = job, job.root
        self.progress = progress or Progress(enabled=False)
        self.plan_path = self.root / "_work" / "plan.json"

    # -- planning and resume ---------------------------------------------------------------

    def _prepare(self, overwrite: bool) -> list[list]:
        config_hash = self.job.config.output_hash()
        manifest = self.root / "manifest.json"
        if overwrite and self.root.exists():
            for name in ("manifest.json", "_work", "shards", "ledger", "rejects", "logs"):
                target = self.root / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        if manifest.exists():
            return None
        if self.plan_path.exists():
            plan = json.loads(self.plan_path.read_text())
            if plan["config_hash"] != config_hash:
                raise ConfigError(f"{self.root} holds an unfinished run of another job configuration "
                                  f"({plan['config_hash']}, this one is {config_hash}): "
                                  "use --overwrite, or another output")
            return plan["units"]
        if (self.root / "shards").exists() and any((self.root / "shards").iterdir()):
            raise ConfigError(f"{self.root} already holds shards but no plan: use --overwrite, or another output")
        units = []
        for index, source in enumerate(self.job.sources):
            with self.progress.status(f"planning {source.name}"):
                units += [[index, payload] for payload in source.plan()]
        self.plan_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.plan_path.with_name(".plan.json.tmp")
        tmp.write_text(json.dumps({"config_hash": config_hash, "units": units}))
        tmp.replace(self.plan_path)
        return units

    def run(self, overwrite: bool = False) -> dict:
        started = time.time()
        check_stages(self.job.stages)
        units = self._prepare(overwrite)
        if units is None:
            manifest = json.loads((self.root / "manifest.json").read_text())
            if manifest.get("config_hash") != self.job.config.output_hash():
                raise ConfigError(f"{self.root} holds a finished run of another job configuration: "
                                  "use --overwrite, or another output")
            manifest["resumed"] = "already complete"
            return manifest
        steps = plan_segments(self.job)
        from pipeline.ray_session import ray_session

        log_path = self.root / "logs" / "ray.log"
        self.progress.note(f"Ray's own log lines go to {log_path}")
        with ray_session(self.job.config.ray, log_path):
            for i, step in enumerate(steps):
                if isinstance(step, Segment):
                    self._run_segment(step, units)
                else:
                    self._run_global(step, steps[i - 1], units)
        segments = [s for s in steps if isinstance(s, Segment)]
        reports = [[json.loads(s.report_path(u).read_text()) for u in range(len(units))] for s in segments]
        manifest = build_manifest(self.job.config, segments, reports, started=started, units=len(units),
                                  declarations=declared(self.job.stages), stage_stats=self._stage_stats(steps))
        manifest.update(self.job.manifest_extra)
        write_manifest(self.root, manifest)
        if not self.job.config.keep_work:
            shutil.rmtree(self.root / "_work", ignore_errors=True)
        return manifest

    # -- segments ---------------------------------------------------------------------------

    def _run_segment(self, segment: Segment, units: list[list]) -> None:
        pending = [u for u in range(len(units)) if not segment.report_path(u).exists()]
        names = [s.name for s in segment.stages] + ([f"{segment.signal_of.name} (signal)"] if segment.signal_of else [])
        steps = " -> ".join((["ingest"] if segment.sources else []) + names + ["shards" if segment.final else "work files"])
        done = len(units) - len(pending)
        if not pending:
            self.progress.note(f"{steps}: all {len(units)} units done earlier")
            return
        self.progress.note(steps + (f" ({done} of {len(units)} units done earlier)" if done else ""))
        import ray.data

        res = segment_resources(segment)
        items = [{"unit": u, "payload": json.dumps(units[u])} for u in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        common = dict(batch_size=1, num_cpus=res.num_cpus, num_gpus=res.num_gpus or None, batch_format="numpy")
        if res.actor:
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=res.concurrency or _cluster_cpus())
            ds = ds.map_batches(_worker_class(segment), compute=pool, **common)
        else:
            pool = ray.data.TaskPoolStrategy(size=res.concurrency) if res.concurrency else None
            ds = ds.map_batches(_run_units_task, fn_args=(segment,), compute=pool, **common)
        with self.progress.units(f"segment {segment.index + 1}", total=len(units), done=done) as bar:
            for row in ds.iter_rows():
                bar.advance(json.loads(row["report"]))

    def _run_global(self, stage: GlobalStage, before: Segment, units: list[list]) -> None:
        directory = _decisions_dir(self.root, before.index, stage)
        marker = directory / "_SUCCESS"
        if marker.exists():
            self.progress.note(f"{stage.name}: decided earlier")
            return
        import ray.data

        files, rows = [], 0
        for u in range(len(units)):
            report = json.loads(before.report_path(u).read_text())
            files += [str(self.root / f["path"]) for f in report["files"]]
            rows += sum(f["rows"] for f in report["files"])
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        stats = {}
        with self.progress.status(f"{stage.name}: deciding over {rows:,} documents"):
            if files:
                ds = ray.data.read_parquet(files).select_columns(["id", "_unit", "_row", *stage.signal_columns()])
                drops, stats = stage.decide(ds, rows)
                drops.groupby("_unit", num_partitions=min(len(units), 2 * _cluster_cpus())).map_groups(write_unit_decisions, fn_args=(str(tmp),),
                                                  batch_format="pyarrow").materialize()
        (tmp / "_SUCCESS").write_text(json.dumps({"documents": rows, "stats": stats}))
        shutil.rmtree(directory, ignore_errors=True)
        tmp.replace(directory)

    def _stage_stats(self, steps: list) -> dict:
        """Each global stage's statistics, kept with its decisions (so a resumed run has them too)."""
        out = {}
        for i, stage in enumerate(steps):
            if isinstance(stage, GlobalStage):
                marker = json.loads((_decisions_dir(self.root, steps[i - 1].index, stage) / "_SUCCESS").read_text())
                key = stage.name if stage.name not in out else f"{stage.name} (#{i})"
                out[key] = marker.get("stats", {})
        return out


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))
