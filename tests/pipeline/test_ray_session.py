"""Ray's own output goes to the run's log file: a note that the raylet sends the driver (the way its
"N PYTHON worker processes have been started" warning comes) is written there, not to stdout."""

from __future__ import annotations

import time

from pipeline.config import RayConfig
from pipeline.ray_session import ray_session


def test_a_raylet_note_lands_in_the_log_not_on_stdout(ray_local, tmp_path, capsys):
    from ray._private import worker
    from ray._private.utils import publish_error_to_driver  # how the raylet's notes reach the driver

    log = tmp_path / "logs" / "ray.log"
    note = "WARNING: 8 PYTHON worker processes have been started (a note sent by the test)"
    printed = worker.print_to_stdstream
    with ray_session(RayConfig(), log):
        publish_error_to_driver("worker_pool_large", note, gcs_client=worker.global_worker.gcs_client)
        deadline = time.time() + 60
        while time.time() < deadline and not (log.exists() and note in log.read_text()):
            time.sleep(0.2)
        print("our own line")
    assert f"(raylet) {note}" in log.read_text()
    out = capsys.readouterr().out
    assert note not in out and "our own line" in out
    assert worker.print_to_stdstream is printed  # as it was after the session
