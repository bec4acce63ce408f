"""The Arrow document schema every stage can rely on.

One document is one row. Internal columns start with `_` (`_unit`, `_row`: the work unit a row
came from and its ordinal inside it, the deterministic order key) and never reach output shards.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

SCHEMA_VERSION = 1

BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string()),
    pa.field("source", pa.string()),
    pa.field("uri", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("meta", pa.string()),  # a JSON object, so every reader opens it as it is
]
ORDER_FIELDS = [pa.field("_unit", pa.int32()), pa.field("_row", pa.int64())]
KINDS = ("log", "config", "doc", "code", "web", "qa", "other")

BASE_SCHEMA = pa.schema(BASE_FIELDS)
WORK_SCHEMA = pa.schema(BASE_FIELDS + ORDER_FIELDS)


def doc_id(source: str, uri: str) -> str:
    """A stable id: a hash of where the document came from, so re-running gives the same ids."""
    # surrogatepass: a uri from a file name that is not UTF-8 still hashes (to the same id each run)
    return hashlib.blake2b(f"{source}\x00{uri}".encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def is_internal(name: str) -> bool:
    return name.startswith("_")


def public_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not is_internal(f.name)])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Order and cast `table` to `schema`, adding missing columns as nulls."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table[field.name].cast(field.type))
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
