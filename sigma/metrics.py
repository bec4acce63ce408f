"""What a training run reports: a JSONL file of metrics, TensorBoard when installed, a progress bar.

``metrics.jsonl`` has one object per line with a ``step`` key. When a run resumes from step ``s``,
lines after ``s`` (written by the interrupted run after its last checkpoint) are dropped first, so
the file always reads as one run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` in order; [] when it has none yet."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


class MetricsLog:
    def __init__(self, run_dir: str | Path, resume_step: int | None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._keep_until(resume_step)
        self._file = self.path.open("a")
        self._tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._tensorboard = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def _keep_until(self, step: int | None) -> None:
        if not self.path.exists():
            return
        kept = [m for m in read_metrics(self.path.parent) if m["step"] <= step] if step is not None else []
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(m) + "\n" for m in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


class TrainingProgress:
    """A rich progress bar: step, loss, tokens/s, MFU and ETA."""

    def __init__(self, total_steps: int, start_step: int, enabled: bool):
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TextColumn("MFU {task.fields[mfu]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step, loss="-", speed="-", mfu="-")

    def __enter__(self) -> "TrainingProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, step: int, loss: float | None = None, tokens_per_s: float | None = None, mfu: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tokens_per_s is not None:
            fields["speed"] = f"{tokens_per_s:,.0f}"
        if mfu is not None:
            fields["mfu"] = f"{100 * mfu:.1f}%"
        self._progress.update(self._task, completed=step, **fields)

    def print(self, message: str) -> None:
        self._progress.console.print(message)
