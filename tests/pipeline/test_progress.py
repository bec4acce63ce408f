"""Progress off a terminal: whole lines with units, documents, MB/s and ETA, not a redrawn bar."""

import io

from rich.console import Console

from pipeline.progress import Progress


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    progress = Progress(console=Console(file=out, width=40, soft_wrap=True), interval=0.0)
    report = {"counts": [{"docs_in": 1500, "bytes_in": 3_000_000, "dropped": {"too_short": 7}}]}
    with progress.units("segment 1", total=3, done=1) as bar:
        bar.advance(report)
        bar.advance(report)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\x1b" not in out.getvalue()
    assert lines[0].startswith("segment 1: 2/3 units  1,500 docs  3.0 MB  ") and " MB/s  7 dropped  elapsed " in lines[0]
    assert lines[1].startswith("segment 1: 3/3 units  3,000 docs  6.0 MB") and lines[1].endswith("eta 0:00:00")
