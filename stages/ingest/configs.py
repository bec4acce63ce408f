"""Configs understood as configs: a stage that detects and parses every config document.

For each document of kind `config` (from the files or git sources, say), the format is detected
from its path and text and the text is parsed (config_formats.py). `meta` gets `config_format`,
`config_parsed` (true/false), `config_keys` (top-level keys or sections, at most 50) and, for one
that does not parse, `config_error`. Unparseable configs are kept and marked by default; with
`drop_unparseable` they are dropped as `config_unparseable:<format>`. A config in no known format
gets `config_format: unknown` and is kept.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.stage import Resources, Result, Stage, split_dropped
from stages.ingest.config_formats import parse_config


class ConfigParse(Stage):
    name = "config_parse"
    resources = Resources(batch_size=512)

    def __init__(self, kinds: list[str] | None = None, drop_unparseable: bool = False):
        self.kinds = set(kinds or ["config"])
        self.drop_unparseable = drop_unparseable

    def process(self, batch: pa.Table) -> Result:
        metas, reasons, details = [], [], []
        changed = False
        for text, kind, uri, meta_json in zip(batch["text"].to_pylist(), batch["kind"].to_pylist(),
                                              batch["uri"].to_pylist(), batch["meta"].to_pylist()):
            reason = detail = None
            if kind in self.kinds and text is not None:
                meta = json.loads(meta_json or "{}")
                parsed = parse_config(meta.get("path") or uri or "", text)
                if parsed is None:
                    meta["config_format"] = "unknown"
                else:
                    meta.update(config_format=parsed.format, config_parsed=parsed.ok, config_keys=parsed.keys)
                    if not parsed.ok:
                        meta["config_error"] = parsed.error
                        if self.drop_unparseable:
                            reason, detail = f"config_unparseable:{parsed.format}", parsed.error
                meta_json = json.dumps(meta, sort_keys=True, ensure_ascii=False)
                changed = True
            metas.append(meta_json)
            reasons.append(reason)
            details.append(detail)
        if changed:
            batch = batch.set_column(batch.column_names.index("meta"), "meta", pa.array(metas, pa.string()))
        return split_dropped(batch, reasons, details)
