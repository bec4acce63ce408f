"""The order an arm reads its variant in, and what an arm's budget read of each kind.

The trainer reads a shard folder by row groups in a seeded order. A curate output's row groups
hold a thousand documents each, in the order they were read (all of `/var/log`, then all of
`/etc`...), and one document can be a 1 MB log: a budget smaller than the corpus then trains on a
handful of row groups and documents, and the kinds it sees depend on the shard order and on a few
long files, not on the recipe. So each variant is written once more in a fixed random order:
documents cut into pieces of at most `piece_chars` characters (at a line end where there is one),
the pieces ordered by a hash of (document id, piece index). Any stretch of that order is a random
sample of the variant's text, and a document two variants share is drawn at the same place in
both, so two variants differ in what their recipes kept, not in the draw.

The ordered folder has the layout of a curate output (`manifest.json` beside `shards/`) and its
manifest carries the variant's stage list, so the suite's contamination check reads it as it reads
the variant it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sigma.shards import ShardSet, sha256_file

SHARD = "shards/part-00000.parquet"


def pieces(text: str, piece_chars: int) -> list[str]:
    """`text` cut into consecutive pieces of at most `piece_chars` characters, each ending at the
    last line end inside that length where there is one; joined they give `text` back."""
    out, start = [], 0
    while len(text) - start > piece_chars:
        end = text.rfind("\n", start, start + piece_chars) + 1
        if end <= start:
            end = start + piece_chars
        out.append(text[start:end])
        start = end
    if start < len(text) or not out:
        out.append(text[start:])
    return out


def order_key(doc_id: str, index: int) -> bytes:
    return hashlib.blake2b(f"{doc_id}\x00{index}".encode(), digest_size=8).digest()


def write_order(src: Path, out: Path, piece_chars: int, row_group_rows: int) -> Path:
    """`src` (a curate output) as pieces in the fixed random order, in `out`; kept if already written
    from the same `src` manifest with the same settings."""
    src_manifest = json.loads((src / "manifest.json").read_text())
    settings = {"piece_chars": piece_chars, "row_group_rows": row_group_rows,
                "from": str(src), "from_config_hash": src_manifest.get("config_hash")}
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and json.loads(manifest_path.read_text()).get("order") == settings:
        return out
    rows: dict[str, list] = {}
    extra = ["decontam.suite"]  # what the contamination check reads on every row
    for path in ShardSet.open(src).files:
        table = pq.read_table(path)
        names = ["id", "text", "source", "uri", "kind", "meta"] + [c for c in extra if c in table.column_names]
        for name in names:
            values = table.column(name).to_pylist()
            if name == "text":
                rows.setdefault("_pieces", []).extend(pieces(t or "", piece_chars) for t in values)
            else:
                rows.setdefault(name, []).extend(values)
    columns = {name: [] for name in rows if name != "_pieces"}
    keys = []
    texts = []
    for i, doc_pieces in enumerate(rows["_pieces"]):
        for k, piece in enumerate(doc_pieces):
            for name in columns:
                columns[name].append(f"{rows['id'][i]}#{k}" if name == "id" else rows[name][i])
            texts.append(piece)
            keys.append(order_key(rows["id"][i], k))
    order = np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)
    arrays = {name: pa.array(values).take(order) for name, values in columns.items()}
    arrays["text"] = pa.array(texts, type=pa.large_string()).take(order)
    table = pa.table({name: arrays[name] for name in ["id", "text", *[n for n in columns if n != "id"]]})

    (out / "shards").mkdir(parents=True, exist_ok=True)
    shard = out / SHARD
    tmp = shard.with_name(f".{shard.name}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_rows)
    tmp.replace(shard)
    manifest = {
        "order": settings, "config": src_manifest.get("config"),
        "documents": len(rows["id"]), "pieces": table.num_rows,
        "bytes_by_kind": _bytes_by_group(table),
        "files": [{"path": SHARD, "rows": table.num_rows, "bytes": shard.stat().st_size, "sha256": sha256_file(shard)}],
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(manifest_path)
    return out


def group(source: str | None, kind: str | None) -> str:
    """What the read mix is counted by: source and kind (`man:doc` is not `file:doc`)."""
    return f"{source or 'unknown'}:{kind or 'other'}"


def _bytes_by_group(table: pa.Table) -> dict[str, int]:
    counts: Counter = Counter()
    for text, source, kind in zip(*(table.column(c).to_pylist() for c in ("text", "source", "kind"))):
        counts[group(source, kind)] += len((text or "").encode())
    return dict(sorted(counts.items()))


def bytes_by_kind(data_dir: Path, tokenizer, stream_state: dict, seed: int, lanes: int) -> dict[str, int]:
    """UTF-8 bytes of each source and kind (`group`) that a training stream over `data_dir` (seed
    `seed`, `lanes` lanes, from the start) had read when it saved `stream_state`: in each lane's row
    groups, every row before the lane's position, and the part of the row at it that was read."""
    from sigma.packing import SequenceStream

    shard_set = ShardSet.open(data_dir, verify=False)
    stream = SequenceStream(shard_set, tokenizer, 1, seed=seed, lanes=lanes)
    seen: Counter = Counter()
    for lane, position in enumerate(stream_state["lanes"]):
        for epoch in range(position["epoch"] + 1):
            units = stream.units(epoch, lane)
            last = position["unit"] if epoch == position["epoch"] else len(units) - 1
            for index, unit in enumerate(units[: last + 1]):
                table = shard_set.read_row_group(unit.group, columns=("text", "source", "kind"))
                texts = table.column("text").to_pylist()
                kinds = [group(s, k) for s, k in zip(table.column("source").to_pylist(), table.column("kind").to_pylist())]
                row_order = stream.row_order(epoch, unit)
                at_position = (epoch, index) == (position["epoch"], position["unit"])
                for r in range(position["row"] if at_position else len(row_order)):
                    j = int(row_order[r])
                    seen[kinds[j]] += len((texts[j] or "").encode())
                if at_position and position["token"] and position["row"] < len(row_order):
                    j = int(row_order[position["row"]])
                    offsets = tokenizer.encode(texts[j] or "").offsets
                    read = offsets[min(position["token"], len(offsets)) - 1][1] if offsets else 0
                    seen[kinds[j]] += len((texts[j] or "")[:read].encode())
    return dict(sorted(seen.items()))
