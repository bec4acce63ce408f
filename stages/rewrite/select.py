"""Which synthetic rows a corpus keeps: those whose answers were verified against the machine,
those that were not, or none (`synthesize` records in each row's meta the check its answer passed,
`verified`, or null when it was written with `verify: false`). Crawled rows pass.

    - synthetic_filter: {keep: verified}     # train on the verified synthetic rows only

Dropped rows are ledger entries, `synthetic_excluded` with what was kept in the detail.
"""

from __future__ import annotations

import json
from typing import Literal

import pyarrow as pa

from pipeline.stage import Resources, Result, Stage, split_dropped
from stages.rewrite.requests import SYNTHETIC

KEEP = ("all", "verified", "unverified", "none")


class SyntheticFilter(Stage):
    """Keeps crawled rows and the synthetic rows `keep` names: `all`, `verified`, `unverified`, `none`."""

    name = "synthetic_filter"
    resources = Resources(batch_size=4096)

    def __init__(self, keep: Literal["all", "verified", "unverified", "none"] = "all"):
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}")
        self.keep = keep

    def process(self, batch: pa.Table) -> Result:
        reasons = []
        for source, meta in zip(batch["source"].to_pylist(), batch["meta"].to_pylist()):
            if source != SYNTHETIC or self.keep == "all":
                reasons.append(None)
                continue
            verified = bool(json.loads(meta or "{}").get("verified"))
            kept = (self.keep == "verified" and verified) or (self.keep == "unverified" and not verified)
            reasons.append(None if kept else "synthetic_excluded")
        return split_dropped(batch, reasons, [None if r is None else f"keep: {self.keep}" for r in reasons])
