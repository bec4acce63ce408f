"""Connect to Ray: an embedded local Ray by default, or an existing cluster by address.

Ray's own log lines go to the run's log file, not the terminal, for as long as the session
lasts: its Python loggers, what its C++ core writes to the driver's stderr (such as
core_worker.cc's note about Ray Data's actor-pool constructor arguments), and the notes that the
raylet sends the driver (such as its warning that many worker processes have been started).
This process's own output (the progress display, errors) still reaches the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path

from pipeline.config import RayConfig


@contextlib.contextmanager
def stderr_to(path: Path | None):
    """File descriptor 2 (what C++ libraries and old logging handlers write to) appended to
    `path`; `sys.stderr` is a new stream on the original stderr meanwhile."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    previous = sys.stderr
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), write_through=True,
                                  encoding=getattr(previous, "encoding", None) or "utf-8", errors="backslashreplace")
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = previous


@contextlib.contextmanager
def driver_notes_to(path: Path | None):
    """The notes that Ray's driver prints from its background thread (the raylet's and the
    autoscaler's, `(raylet) WARNING: ...`) appended to `path`. Ray prints them to the `sys.stdout`
    of the moment through `ray._private.worker.print_to_stdstream`, so neither fd 2 nor
    `log_to_driver=False` keeps them off the terminal; that function is replaced meanwhile."""
    from ray._private import worker

    if path is None or not callable(getattr(worker, "print_to_stdstream", None)):
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    printed = worker.print_to_stdstream

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as log:
            log.writelines(f"{stamp} ({data.get('pid', 'ray')}) {line}\n" for line in data.get("lines", []))

    worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        worker.print_to_stdstream = printed


@contextlib.contextmanager
def ray_session(config: RayConfig, log_path: Path | None = None):
    import ray
    from ray.data import DataContext

    with stderr_to(log_path), driver_notes_to(log_path):
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING if log_path else logging.ERROR)
        started = False
        if not ray.is_initialized():
            address = config.address or os.environ.get("RAY_ADDRESS")
            kwargs = dict(include_dashboard=False, logging_level=logging.WARNING if log_path else logging.ERROR,
                          log_to_driver=False)
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=config.num_cpus, **kwargs)
            started = True
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        try:
            yield
        finally:
            if started:
                ray.shutdown()
