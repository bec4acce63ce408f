"""One map segment over one work unit: read, run the stages, write the output and the ledger.

A segment is a run of map stages between global stages. Its output for a unit (the work files of
an inner segment, or the final shards) is written as a whole and then a report is written last;
the report is the unit's done marker, so a re-run skips exactly the units that finished.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.counts import RunCounts, StageCounts
from pipeline.ledger import LedgerWriter
from pipeline.schema import BASE_SCHEMA, ORDER_FIELDS, conform
from pipeline.shards import ShardWriter
from pipeline.source import Source, unreadable, unreadable_table
from pipeline.stage import GlobalStage, Result, Stage, split_dropped

log = logging.getLogger(__name__)
INGEST = "ingest"
READ_BATCH_ROWS = 2048
STAGE_ERROR = "stage_error"
MIN_ERRORS_TO_FAIL = 2  # one document that breaks a stage, alone in its unit, is a ledger entry


class StageFailed(RuntimeError):
    """A stage raised for too many documents of one unit: the stage is broken, not the documents."""


@dataclass
class WriterSettings:
    max_rows: int = 1_000_000
    max_bytes: int = 256 << 20
    compression: str = "zstd"
    row_group_rows: int = 1024
    rejects: str = "all"  # all | sample | none
    rejects_rate: float = 0.1  # as pipeline.config.WriterConfig


@dataclass
class Segment:
    index: int
    root: Path
    stages: list[Stage]
    schema: pa.Schema  # what this segment writes (work files keep `_unit`, `_row`)
    sources: list[Source] | None = None  # the first segment reads the sources
    signal_of: GlobalStage | None = None  # the global stage whose signal ends this segment
    final: bool = False
    writer: WriterSettings = field(default_factory=WriterSettings)
    max_error_rate: float = 0.5  # share of a unit's documents a stage may raise for before the run fails

    @property
    def work_dir(self) -> Path:
        return self.root / "_work" / f"s{self.index}"

    def report_path(self, unit: int) -> Path:
        return self.work_dir / f"u{unit:05d}.json"

    def output_path(self, unit: int) -> str:
        return "shards" if self.final else f"_work/s{self.index}"

    def output_prefix(self, unit: int) -> str:
        return f"part-{unit:05d}" if self.final else f"u{unit:05d}"

    def setup(self) -> None:
        for stage in self.stages:
            stage.setup()
        if self.signal_of is not None:
            self.signal_of.setup()


def _text_bytes(table: pa.Table) -> int:
    if table.num_rows == 0 or table["text"].null_count == table.num_rows:
        return 0
    return pc.sum(pc.binary_length(table["text"].cast(pa.large_binary()))).as_py() or 0


def _safe_process(stage: Stage, batch: pa.Table, errors: list[str]) -> Iterator[Result]:
    """Run a stage; if it raises, bisect to the documents that make it fail and drop only those.
    Only an error raised for a single document is a ledger entry; the first one goes to `errors`."""
    try:
        yield stage.process(batch)
    except Exception as exc:  # a document that breaks a stage is a ledger entry, not a crashed job
        if batch.num_rows == 1:
            log.warning("stage %s failed on document %s: %r", stage.name, batch["id"][0], exc)
            if not errors:
                errors.append(f"{type(exc).__name__}: {exc}"[:500])
            yield split_dropped(batch, [f"{STAGE_ERROR}:{type(exc).__name__}"], [str(exc)[:500]])
            return
        half = batch.num_rows // 2
        yield from _safe_process(stage, batch.slice(0, half), errors)
        yield from _safe_process(stage, batch.slice(half), errors)


def check_error_rate(counts: RunCounts, errors: dict[str, list[str]], unit: int, max_rate: float) -> None:
    """Fail the run, with the first error, when a stage raised for more than `max_rate` of the
    documents it saw in this unit (and for at least MIN_ERRORS_TO_FAIL of them)."""
    for name, first in errors.items():
        c = counts[name]
        failed = sum(n for reason, n in c.dropped.items() if reason.startswith(STAGE_ERROR + ":"))
        if failed >= MIN_ERRORS_TO_FAIL and failed > max_rate * c.docs_in:
            raise StageFailed(f"stage {name} raised for {failed} of {c.docs_in} documents of unit {unit} "
                              f"(more than max_stage_error_rate {max_rate:g}); first error: "
                              f"{first[0]}".replace("\n", " "))


def _previous_output(segment: Segment, unit: int) -> Iterator[Result]:
    directory = segment.root / "_work" / f"s{segment.index - 1}"
    for path in sorted(directory.glob(f"u{unit:05d}-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS):
            yield Result(pa.Table.from_batches([batch]))


def _number_rows(result: Result, unit: int, start: int) -> tuple[Result, int]:
    """Give every row from the source its order key: the unit, then its ordinal in the unit."""
    tables = [result.kept] + ([result.dropped] if result.dropped is not None else [])
    out = []
    for t in tables:
        out.append(t.append_column(ORDER_FIELDS[0], pa.array([unit] * t.num_rows, pa.int32()))
                    .append_column(ORDER_FIELDS[1], pa.array(range(start, start + t.num_rows), pa.int64())))
        start += t.num_rows
    return Result(out[0], out[1] if len(out) > 1 else None), start


def _ingest_counts(result: Result) -> StageCounts:
    """What a source read: every input, as a document or as an entry for the unreadable."""
    kept_bytes = _text_bytes(result.kept)
    c = StageCounts(result.kept.num_rows, result.kept.num_rows, kept_bytes, kept_bytes)
    if result.dropped is not None:
        c.docs_in += result.dropped.num_rows
        c.dropped.update(result.dropped["reason"].to_pylist())
    return c


def _clean_stale(segment: Segment, unit: int) -> None:
    """Remove what a killed attempt at this unit may have left, so outputs match a clean run."""
    prefix = segment.output_prefix(unit)
    for directory, pattern in ((segment.root / segment.output_path(unit), f"{prefix}-*.parquet"),
                               (segment.root / "ledger", f"s{segment.index}-u{unit:05d}-*.parquet"),
                               (segment.root / "rejects", f"s{segment.index}-u{unit:05d}-*.parquet")):
        for path in directory.glob(pattern):
            path.unlink()


def run_unit(segment: Segment, unit: int, payload) -> dict:
    """Process one work unit through one segment and return its report (also written to disk).

    `payload` is the unit's plan entry: `[source index, source payload]` for the first segment.
    """
    started = time.time()
    _clean_stale(segment, unit)
    out = ShardWriter(segment.root, segment.output_path(unit), segment.output_prefix(unit), segment.schema,
                      segment.writer.max_rows, segment.writer.max_bytes, segment.writer.compression,
                      segment.writer.row_group_rows)
    ledger = LedgerWriter(segment.root, f"s{segment.index}-u{unit:05d}", segment.writer.rejects,
                          segment.writer.rejects_rate)
    counts = RunCounts()
    errors: dict[str, list[str]] = {}
    for stage in segment.stages:
        stage.start_unit(unit)
    try:
        if segment.sources is not None:
            source_index, source_payload = payload
            results, next_row = _read_guarded(segment.sources[source_index], source_payload, unit), 0
        else:
            results = _previous_output(segment, unit)
        for result in results:
            if segment.sources is not None:
                result, next_row = _number_rows(result, unit, next_row)
                counts.add(INGEST, _ingest_counts(result))
                if result.dropped is not None:
                    ledger.write(INGEST, result.dropped)
            batches = [result.kept]
            for stage in segment.stages:
                batches = list(_run_stage(stage, batches, counts, ledger, errors.setdefault(stage.name, [])))
            for batch in batches:
                if segment.signal_of is not None:
                    batch = segment.signal_of.signal(batch)
                out.write(conform(batch, segment.schema) if segment.final else batch)
        check_error_rate(counts, {n: e for n, e in errors.items() if e}, unit, segment.max_error_rate)
        files = out.close()
        ledger_files, rejects_files = ledger.close()
    except BaseException:
        out.abort()
        ledger.abort()
        raise
    report = {
        "unit": unit, "segment": segment.index, "seconds": round(time.time() - started, 3), "node": _node_id(),
        "counts": counts.to_list(), "files": [f.to_dict() for f in files],
        "ledger": [f.to_dict() for f in ledger_files], "rejects": [f.to_dict() for f in rejects_files],
    }
    _write_json_atomic(segment.report_path(unit), report)
    return report


def _read_guarded(source: Source, payload, unit: int) -> Iterator[Result]:
    """A source's results for one unit. If reading raises (a bug, or input no source rule foresaw),
    what is left of the unit becomes one ledger entry, `unreadable:source_error` with the error,
    instead of a failed task and a stopped job; the documents read before it are kept."""
    results = iter(source.read(payload))
    while True:
        try:
            result = next(results)
        except StopIteration:
            return
        except Exception as exc:
            where = f"{source.name}:unit{unit}:{json.dumps(payload, ensure_ascii=False)[:300]}"
            detail = f"{type(exc).__name__}: {exc}"[:500]
            log.info("source %s failed on unit %d: %s", source.name, unit, detail)
            yield Result(BASE_SCHEMA.empty_table(), unreadable_table(
                [unreadable(source.kind, where, "unreadable:source_error", detail)]))
            return
        yield result


def _run_stage(stage: Stage, batches: list[pa.Table], counts: RunCounts, ledger: LedgerWriter, errors: list[str]):
    size = stage.resources.batch_size
    for batch in batches:
        for start in range(0, max(batch.num_rows, 1), size):
            chunk = batch.slice(start, size)
            if chunk.num_rows == 0:
                continue
            c = StageCounts(chunk.num_rows, 0, _text_bytes(chunk))
            for result in _safe_process(stage, chunk, errors):
                c.docs_out += result.kept.num_rows
                c.bytes_out += _text_bytes(result.kept)
                if result.counts:
                    c.counts.update(result.counts)
                if result.dropped is not None and result.dropped.num_rows:
                    c.dropped.update(result.dropped["reason"].to_pylist())
                    ledger.write(stage.name, result.dropped)
                if result.kept.num_rows:
                    yield result.kept
            counts.add(stage.name, c)


def _node_id() -> str | None:
    """The Ray node that ran the unit (a run's manifest counts units per node)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray, or a Ray without a runtime context
        return None


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)
