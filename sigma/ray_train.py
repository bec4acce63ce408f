"""Training on a Ray cluster through Ray Train: ``sigma train ... --ray``, and ``train.ray`` in loop files.

Ray Train's ``TorchTrainer`` places one worker per GPU (or per CPU slot) where the cluster has
room, joins the workers in a process group (NCCL on GPUs, gloo on CPUs) and sets the environment
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), so every worker runs the loop of
``sigma.train.train`` unchanged: DDP or FSDP as ``parallel:`` says, each rank reading its own row
groups, rank 0 writing checkpoints and metrics into the run folder. The data, the tokenizer and
the run folder must be on a path every node sees (a shared filesystem); a run started again with
``resume`` continues from its last checkpoint with the same losses, as under ``torchrun``.

Rank 0's messages and progress come back to the driver through a Ray queue, and the driver draws
the progress bar. Ray is imported inside the functions only: ``sigma`` imports without it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import ConfigDict


class ClusterError(ValueError):
    """The cluster cannot run the training as asked: too few resources, or a path a worker does not see."""


@dataclass(frozen=True)
class RayWorkers:
    """How many training workers Ray Train starts, and what each holds."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    workers: int = 2
    gpus_per_worker: float | None = None  # default: 1 where the cluster has GPUs, else 0 (CPU workers, gloo)
    cpus_per_worker: float = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if (self.gpus_per_worker or 0) < 0 or self.cpus_per_worker < 0:
            raise ValueError("gpus_per_worker and cpus_per_worker cannot be negative")


def train_on_ray(
    config: Any,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    workers: RayWorkers = RayWorkers(),
    *,
    resume: bool = False,
    tokenizer: str | Path | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    init_from: str | Path | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """``sigma.train.train(config, data_dirs, out_dir, ...)`` on Ray Train workers; returns rank 0's
    last logged metrics. The paths are made absolute here: a worker's working directory is not
    the driver's. Uses the Ray this process is connected to, else connects to ``address``
    (``auto``: the cluster this machine belongs to; None: ``RAY_ADDRESS``, else an embedded Ray).
    A worker's error is raised here as it was raised there (a ``NoDocumentsError`` stays one); a
    cluster that cannot run the workers as asked is a ``ClusterError``."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        from ray.util.queue import Queue
    except ImportError as exc:
        raise ClusterError(f"training on Ray needs Ray Train ({exc}): pip install 'ray[train]'") from None

    out = Path(out_dir).absolute()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    try:
        gpus = _gpus_per_worker(workers)
        queue = Queue(actor_options={"num_cpus": 0})
        arguments = {
            "config": config, "data_dirs": [str(Path(d).absolute()) for d in data_dirs], "out_dir": str(out),
            "resume": resume, "tokenizer": _absolute(tokenizer), "stop_at": stop_at, "progress": progress,
            "init_from": _absolute(init_from), "queue": queue,
        }
        trainer = TorchTrainer(
            _worker, train_loop_config=arguments,
            scaling_config=ScalingConfig(num_workers=workers.workers, use_gpu=gpus > 0, resources_per_worker={
                "CPU": workers.cpus_per_worker, **({"GPU": gpus} if gpus else {})}),
            run_config=RunConfig(name="ray_train", storage_path=str(out)),
        )
        with DriverView(queue, workers.workers, progress) as view:
            _fit(trainer)
        return view.record
    finally:
        if started:
            ray.shutdown()


def _absolute(path: str | Path | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


def _gpus_per_worker(workers: RayWorkers) -> float:
    """The GPUs each worker asks for. Ray Train checks a request against an autoscaler's limits and
    waits for nodes; on a cluster without one, the nodes there now are all it has, so a request
    they cannot hold is an error here rather than a wait for nodes that never come."""
    import sys

    import ray
    from ray._private.state import state  # where Ray Train reads an autoscaler's limits

    resources = ray.cluster_resources()
    gpus = workers.gpus_per_worker if workers.gpus_per_worker is not None else (1 if resources.get("GPU") else 0)
    try:
        autoscaled = bool(state.get_max_resources_from_cluster_config())
    except Exception:  # not in this version of Ray: assume the cluster may grow
        autoscaled = True
    for name, each in (("GPU", gpus), ("CPU", workers.cpus_per_worker)):
        need, have = workers.workers * each, resources.get(name, 0)
        if need > have:
            short = f"{workers.workers} workers x {each:g} {name} need {need:g} {name}s; the Ray cluster has {have:g}"
            if not autoscaled:
                raise ClusterError(f"{short}: ask for fewer workers, or add nodes")
            print(f"waiting for the autoscaler: {short} now", file=sys.stderr, flush=True)
    return gpus


def _fit(trainer: Any) -> None:
    """Run the trainer; a worker's own error comes out as itself, Ray Train's report chained to it."""
    from ray.train import TrainingFailedError

    try:
        trainer.fit()
    except TrainingFailedError as failed:
        cause = _worker_error(failed)
        if cause is None:
            raise
        raise cause from failed


def _worker_error(failed: Exception) -> BaseException | None:
    """The first worker's exception, preferring one of the training code's (a ValueError, say) to
    a broken connection of the process group that another worker's failure caused."""
    failures = getattr(failed, "worker_failures", None) or {}
    errors = [getattr(failures[rank], "_base_exc", failures[rank]) for rank in sorted(failures)]
    errors.sort(key=lambda e: isinstance(e, RuntimeError))  # gloo and NCCL report as RuntimeError
    return errors[0] if errors else None


def _worker(arguments: dict[str, Any]) -> None:
    """One Ray Train worker: the process group is Ray's, the loop is ``sigma.train.train``."""
    import ray
    import ray.train
    import ray.train.torch

    from sigma.train import train

    context = ray.train.get_context()
    device = ray.train.torch.get_device()
    node = ray.get_runtime_context().get_node_id()
    relay = Relay(arguments["queue"])
    relay.send("worker", context.get_world_rank(), node, str(device))
    _check_paths_agree(arguments, node, context.get_world_size())
    record = train(
        arguments["config"], arguments["data_dirs"], arguments["out_dir"], resume=arguments["resume"],
        tokenizer=arguments["tokenizer"], stop_at=arguments["stop_at"], device=str(device),
        progress=arguments["progress"], init_from=arguments["init_from"], relay=relay,
    )
    if context.get_world_rank() == 0:
        relay.send("done", record)


def _check_paths_agree(arguments: dict[str, Any], node: str, world_size: int) -> None:
    """Every worker sees the data folders and the run's latest checkpoint as rank 0 does: a worker on
    a node without the shared path would otherwise start from step 0 beside a rank 0 that resumed."""
    import torch.distributed as dist

    from sigma.checkpoint import find_checkpoint

    view = ([Path(p).is_dir() for p in arguments["data_dirs"]], str(find_checkpoint(arguments["out_dir"])))
    everyone: list[Any] = [None] * world_size
    dist.all_gather_object(everyone, (node, view))
    first_dirs, first_checkpoint = everyone[0][1]
    for rank, (its_node, (dirs, checkpoint)) in enumerate(everyone):
        differ = [p for p, a, b in zip(arguments["data_dirs"], dirs, first_dirs) if a != b]
        if differ or checkpoint != first_checkpoint:
            seen = differ[0] if differ else f"the checkpoints in {arguments['out_dir']}"
            raise ClusterError(f"rank {rank} (node {its_node[:12]}) does not see {seen} as rank 0 does: the data "
                               "and the run folder must be on a path every node sees (a shared filesystem)")


class Relay:
    """A worker's side: what ``train`` prints and draws on the main rank, sent to the driver.

    It stands in for both the terminal (``print``) and ``TrainingProgress`` (``progress`` opens
    it; ``update``); a step without new numbers is sent at most every ``EVERY_S`` seconds.
    """

    EVERY_S = 0.5

    def __init__(self, queue: Any):
        self.queue, self.enabled, self.sent, self.unsent = queue, False, 0.0, None

    def send(self, *event: Any) -> None:
        self.queue.put(event)

    def print(self, message: str) -> None:
        self.send("print", message)

    def progress(self, total_steps: int, start_step: int, enabled: bool) -> "Relay":
        self.enabled = enabled
        if enabled:
            self.send("start", total_steps, start_step)
        return self

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            if self.unsent is not None:
                self.send("update", self.unsent, None, None, None)
            self.send("stop")

    def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None,
               mfu: float | None = None) -> None:
        if not self.enabled:
            return
        if loss is None and time.monotonic() - self.sent < self.EVERY_S:
            self.unsent = step
            return
        self.send("update", step, loss, tokens_per_s, mfu)
        self.sent, self.unsent = time.monotonic(), None


class DriverView:
    """The driver's side: rank 0's messages printed and its progress bar drawn here, from a
    thread that reads the queue while ``fit`` runs; ``record`` is rank 0's last metrics."""

    def __init__(self, queue: Any, workers: int, progress: bool):
        self.queue, self.workers, self.progress = queue, workers, progress
        self.record: dict[str, Any] = {}
        self.placed: dict[int, tuple[str, str]] = {}
        self.bar: Any = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "DriverView":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        if self.bar is not None:  # the workers stopped before closing it
            self.bar.__exit__(None, None, None)

    def _read(self) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                event = self.queue.get(timeout=0.2)
            except Empty:
                if self.stopping.is_set():  # every put has returned once fit has
                    return
                continue
            self._show(*event)

    def _say(self, message: str) -> None:
        if self.progress:
            (self.bar.print if self.bar is not None else print)(message)

    def _show(self, kind: str, *values: Any) -> None:
        from sigma.metrics import TrainingProgress

        if kind == "worker":
            rank, node, device = values
            self.placed[rank] = (node, device)
            if len(self.placed) == self.workers:
                nodes = len({node for node, _ in self.placed.values()})
                devices = sorted({device.split(":")[0] for _, device in self.placed.values()})
                self._say(f"Ray Train: {self.workers} workers ({', '.join(devices)}) on {nodes} "
                          f"node{'s' if nodes > 1 else ''}")
        elif kind == "print":
            self._say(values[0])
        elif kind == "start":
            self.bar = TrainingProgress(values[0], values[1], enabled=self.progress).__enter__()
        elif kind == "update" and self.bar is not None:
            self.bar.update(*values)
        elif kind == "stop" and self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        elif kind == "done":
            self.record = values[0]
