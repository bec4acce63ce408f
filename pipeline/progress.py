"""The live progress display of a run (rich, on stderr) and its silent twin for tests."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class UnitBar:
    def __init__(self, progress: RichProgress | None, task, title: str):
        self.progress, self.task, self.title = progress, task, title
        self.docs = self.bytes = self.dropped = 0
        self.started = time.time()

    def advance(self, report: dict) -> None:
        counts = report["counts"]
        if counts:
            self.docs += counts[0]["docs_in"]
            self.bytes += counts[0]["bytes_in"]
        self.dropped += sum(sum(c["dropped"].values()) for c in counts)
        if self.progress is not None:
            rate = self.bytes / max(1e-9, time.time() - self.started) / 1e6
            self.progress.update(self.task, advance=1, info=(
                f"{self.docs:,} docs  {self.bytes / 1e6:,.1f} MB  {rate:,.1f} MB/s  {self.dropped:,} dropped"))


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]{message}[/dim]")

    @contextlib.contextmanager
    def status(self, message: str):
        if not self.enabled:
            yield
            return
        started = time.time()
        with self.console.status(message):
            yield
        self.console.print(f"{message} [dim]({time.time() - started:.1f} s)[/dim]")

    @contextlib.contextmanager
    def units(self, title: str, total: int, done: int = 0):
        if not self.enabled:
            yield UnitBar(None, None, title)
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("units"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}")]
        with RichProgress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(title, total=total, completed=done, info="")
            yield UnitBar(progress, task, title)
