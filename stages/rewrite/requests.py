"""The input of a synthesis job: one request per (parent document, task), read from a corpus.

A synthesis job is a curate job whose source is an earlier output and whose output rows are the
synthetic documents: each request row already is the child document it asks for (its id, uri,
source `synthetic`, kind, and provenance in meta), holding the parent's text until the
`synthesize` stage replaces it with the model's. So the ledger balances as everywhere else:
requests = children kept + requests dropped with a reason.

Planning picks each task's parents by the template's rules (kind, source, length), never a
synthetic document, and keeps the `per_task` parents whose seeded hash is lowest: a
deterministic sample, spread over the corpus, that reads only the id, kind, source and length
columns, one row group at a time (memory bounded by `per_task`).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from pipeline.schema import BASE_SCHEMA, doc_id
from pipeline.source import Source, unreadable, unreadable_table
from pipeline.stage import Result
from stages.rewrite.templates import load_template

SYNTHETIC = "synthetic"


def corpus_files(paths: list[str]) -> list[str]:
    """Shard files of curate outputs (their manifest's list), shard folders, or Parquet files."""
    files = []
    for p in paths:
        path = Path(p).absolute()
        if (path / "manifest.json").exists():
            manifest = json.loads((path / "manifest.json").read_text())
            files += [str(path / f["path"]) for f in manifest["files"]]
        elif path.is_dir():
            files += [str(f) for f in sorted((path / "shards" if (path / "shards").is_dir() else path).glob("*.parquet"))]
        elif path.exists():
            files.append(str(path))
        else:
            raise ValueError(f"corpus: {p} does not exist")
    return sorted(set(files))


def child_uri(task: str, version: int, round_: int, parent_id: str) -> str:
    return f"{SYNTHETIC}://{task}/v{version}/round-{round_}/{parent_id}"


class SynthRequests(Source):
    """Synthesis requests over `corpus` (curate outputs, shard folders or Parquet files) for
    `tasks` (prompt templates in `prompt_dir`, default configs/prompts); `per_task` parents each
    (None: every parent that fits), chosen by a hash seeded with `seed`; `round` is recorded in
    every child; `unit_requests` requests per work unit (the grain of resume)."""

    kind = "synth_requests"

    def __init__(self, name: str, corpus: list[str], tasks: list[str], round: int = 1, per_task: int | None = 32,
                 seed: int = 0, prompt_dir: str | None = None, unit_requests: int = 16):
        super().__init__(name)
        if not tasks:
            raise ValueError("tasks: name at least one task")
        self.corpus, self.tasks, self.round, self.per_task = corpus, list(tasks), round, per_task
        self.seed, self.prompt_dir, self.unit_requests = seed, prompt_dir, unit_requests
        self.templates = {t: load_template(t, prompt_dir) for t in self.tasks}

    def _priority(self, task: str, parent_id: str) -> int:
        return xxhash.xxh64_intdigest(f"{self.seed}\x00{task}\x00{parent_id}".encode())

    def plan(self) -> list:
        chosen: dict[str, list] = {t: [] for t in self.tasks}  # max-heaps of (-priority, request)
        for file in corpus_files(self.corpus):
            f = pq.ParquetFile(file)
            names = f.schema_arrow.names
            for g in range(f.metadata.num_row_groups):
                table = f.read_row_group(g, columns=[c for c in ("id", "kind", "source", "text") if c in names])
                chars = pc.utf8_length(table["text"].fill_null("")).to_pylist()
                ids = table["id"].to_pylist()
                kinds = table["kind"].to_pylist() if "kind" in names else [None] * len(ids)
                sources = table["source"].to_pylist() if "source" in names else [None] * len(ids)
                for row, (pid, kind, source, n) in enumerate(zip(ids, kinds, sources, chars)):
                    if source == SYNTHETIC:
                        continue
                    for task, template in self.templates.items():
                        if not template.parents.accepts(kind, source, n):
                            continue
                        item = (-self._priority(task, pid), pid, file, g, row)
                        heap = chosen[task]
                        if self.per_task is None or len(heap) < self.per_task:
                            heapq.heappush(heap, item)
                        elif item > heap[0]:
                            heapq.heapreplace(heap, item)
        requests = []
        for task in self.tasks:
            requests += sorted([file, g, row, task] for _, _, file, g, row in chosen[task])
        return [requests[i : i + self.unit_requests] for i in range(0, len(requests), self.unit_requests)]

    def read(self, payload: list) -> Iterator[Result]:
        docs, bad, groups = [], [], {}
        for file, g, row, task in payload:
            if (file, g) not in groups:
                try:
                    groups[(file, g)] = pq.ParquetFile(file).read_row_group(g).to_pylist()
                except (OSError, pa.ArrowException) as exc:
                    groups[(file, g)] = exc
            rows = groups[(file, g)]
            template = self.templates[task]
            if isinstance(rows, Exception) or row >= len(rows):
                uri = child_uri(task, template.version, self.round, f"{file}#rg{g}:{row}")
                bad.append(unreadable(SYNTHETIC, uri, "unreadable:parent_missing", str(rows)[:300], template.output_kind))
                continue
            parent = rows[row]
            uri = child_uri(task, template.version, self.round, parent["id"])
            meta = {"parent_id": parent["id"], "parent_uri": parent.get("uri"), "parent_kind": parent.get("kind"),
                    "parent_source": parent.get("source"), "task": task, "prompt_version": template.version,
                    "round": self.round}
            docs.append({"id": doc_id(SYNTHETIC, uri), "text": parent["text"], "source": SYNTHETIC, "uri": uri,
                         "kind": template.output_kind, "meta": json.dumps(meta, sort_keys=True)})
        yield Result(pa.Table.from_pylist(docs, schema=BASE_SCHEMA), unreadable_table(bad))
