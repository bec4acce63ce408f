"""Per-stage counts that add, so merging the counts of work units is a reduction."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StageCounts:
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # what a stage counts besides drops (`Result.counts`)

    def __add__(self, other: StageCounts) -> StageCounts:
        return StageCounts(self.docs_in + other.docs_in, self.docs_out + other.docs_out,
                           self.bytes_in + other.bytes_in, self.bytes_out + other.bytes_out,
                           self.dropped + other.dropped, self.counts + other.counts)

    def to_dict(self) -> dict:
        out = {"docs_in": self.docs_in, "docs_out": self.docs_out, "bytes_in": self.bytes_in,
               "bytes_out": self.bytes_out, "dropped": dict(sorted(self.dropped.items()))}
        if self.counts:
            out["counts"] = dict(sorted(self.counts.items()))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> StageCounts:
        return cls(d["docs_in"], d["docs_out"], d["bytes_in"], d["bytes_out"], Counter(d["dropped"]),
                   Counter(d.get("counts", {})))


class RunCounts(dict):
    """Stage name -> StageCounts, in pipeline order."""

    def add(self, stage: str, counts: StageCounts) -> None:
        self[stage] = self.get(stage, StageCounts()) + counts

    def __add__(self, other: RunCounts) -> RunCounts:
        out = RunCounts(self)
        for stage, counts in other.items():
            out.add(stage, counts)
        return out

    def to_list(self) -> list[dict]:
        return [{"name": stage, **counts.to_dict()} for stage, counts in self.items()]

    @classmethod
    def from_list(cls, rows: list[dict]) -> RunCounts:
        return cls({r["name"]: StageCounts.from_dict(r) for r in rows})
