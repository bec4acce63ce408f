"""The live progress display of a run (rich, on stderr) and its silent twin for tests. Where
stderr is not a terminal (a log file, CI), progress is plain whole lines, one every `interval`
seconds and one when a segment ends, instead of a bar redrawn in place."""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

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


class PlainUnits(UnitBar):
    """Progress as whole lines: `segment 2: 12/40 units  10,087 docs  3.2 MB  1.1 MB/s  0 dropped
    elapsed 0:00:12  eta 0:00:28`."""

    def __init__(self, console: Console, title: str, total: int, done: int, interval: float):
        super().__init__(None, None, title)
        self.console, self.total, self.done, self.first, self.interval = console, total, done, done, interval
        self.printed = time.time()

    def advance(self, report: dict) -> None:
        super().advance(report)
        self.done += 1
        if self.done >= self.total or time.time() - self.printed >= self.interval:
            self.line()

    def line(self) -> None:
        elapsed = time.time() - self.started
        ran = self.done - self.first
        eta = timedelta(seconds=round(elapsed / ran * (self.total - self.done))) if ran else "?"
        rate = self.bytes / max(1e-9, elapsed) / 1e6
        self.console.print(f"{self.title}: {self.done}/{self.total} units  {self.docs:,} docs  "
                           f"{self.bytes / 1e6:,.1f} MB  {rate:,.1f} MB/s  {self.dropped:,} dropped  "
                           f"elapsed {timedelta(seconds=round(elapsed))}  eta {eta}", highlight=False)
        self.printed = time.time()


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None, interval: float = 10.0):
        self.enabled = enabled
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.interval = interval  # seconds between plain progress lines (not a terminal)

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
        if not self.console.is_terminal:
            yield PlainUnits(self.console, title, total, done, self.interval)
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("units"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                   TextColumn("{task.fields[info]}")]
        with RichProgress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(title, total=total, completed=done, info="")
            yield UnitBar(progress, task, title)


def table_console() -> Console:
    """Standard output for a closing table: off a terminal (a log, CI, `| cat`) rich would fold a
    wide table into 80 columns of cut cells, so it gets room to print whole rows."""
    console = Console()
    return console if console.is_terminal else Console(width=240)

