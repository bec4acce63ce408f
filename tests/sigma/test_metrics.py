"""metrics.jsonl: read in order, and cut back to a resumed run's checkpoint step."""

import json

from sigma.metrics import MetricsLog, read_metrics


def test_a_resumed_log_keeps_the_lines_up_to_its_step_and_reads_as_one_run(tmp_path):
    assert read_metrics(tmp_path) == []
    log = MetricsLog(tmp_path, resume_step=None, tensorboard=False)
    for step in (1, 2, 3, 4):
        log.write({"step": step, "loss": 5.0 - step})
    log.close()
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2, 3, 4]
    log = MetricsLog(tmp_path, resume_step=2, tensorboard=False)  # the interrupted run's steps 3, 4 go
    log.write({"step": 3, "loss": 1.5})
    log.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0}, {"step": 3, "loss": 1.5}]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1]) == {"step": 3, "loss": 1.5}
