"""Connect to Ray: an embedded local Ray by default, or an existing cluster by address."""

from __future__ import annotations

import contextlib
import logging
import os

from pipeline.config import RayConfig


@contextlib.contextmanager
def ray_session(config: RayConfig):
    import ray
    from ray.data import DataContext

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = False
    if not ray.is_initialized():
        address = config.address or os.environ.get("RAY_ADDRESS")
        kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
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
