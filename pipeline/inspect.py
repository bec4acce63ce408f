"""Sampling documents of a curate output by filters: kept ones from the shards, dropped ones from
the ledger with their text from the rejects, and for duplicates the document that was kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.manifest import read_manifest
from pipeline.query import columns, connect, quote_columns, records


def duplicate_reasons(root: str | Path) -> set[str]:
    """The reasons the run's stages declared as duplicates: their detail names the kept id first."""
    declared = read_manifest(Path(root)).get("declared", {})
    return {r["reason"] for r in declared.get("reasons", []) if r["duplicate"]}


@dataclass
class Sample:
    doc: dict
    dropped: bool
    kept_twin: dict | None = None  # for a duplicate: the document it was a duplicate of
    notes: list[str] = field(default_factory=list)


def _where(filters: dict[str, str | None], where: str | None, names: list[str]) -> tuple[str, list]:
    clauses, params = [], []
    for column, value in filters.items():
        if value is not None:
            clauses.append(f'"{column}" = ?')
            params.append(value)
    if where:
        clauses.append(f"({quote_columns(where, names)})")
    return (" where " + " and ".join(clauses)) if clauses else "", params


def values(root: str | Path, column: str, dropped: bool) -> list[str]:
    """The distinct values of `column` among the kept documents (or the dropped ones); for reasons
    also the part before the first `:` (`unreadable` for `unreadable:undecodable`)."""
    con = connect(root)
    table = "ledger" if dropped else "shards"
    if column not in columns(con, table):
        return []
    found = {r[0] for r in con.execute(f'select distinct "{column}" from {table}').fetchall() if r[0] is not None}
    if column == "reason":
        found |= {v.split(":")[0] for v in found}
    return sorted(found)


def sample(root: str | Path, *, kind: str | None = None, source: str | None = None, reason: str | None = None,
           stage: str | None = None, where: str | None = None, limit: int = 5, seed: int = 0,
           dropped: bool = False) -> list[Sample]:
    """Documents matching every filter, in a repeatable random sample. `reason`, `stage` or
    `dropped` look at the dropped documents; otherwise at the kept ones."""
    con = connect(root)
    if reason is None and stage is None and not dropped:
        names = columns(con, "shards")
        clause, params = _where({"kind": kind, "source": source}, where, names)
        rows = records(con, f"select * from (select * from shards{clause}) using sample reservoir({int(limit)} rows) "
                            f"repeatable ({int(seed)})", params)
        return [Sample(r, dropped=False) for r in sorted(rows, key=lambda r: r["id"])]
    names = columns(con, "ledger")
    clause, params = _where({"kind": kind, "source": source, "stage": stage}, where, names)
    if reason is not None:
        clause += (" and " if clause else " where ") + "(reason = ? or reason like ?)"
        params += [reason, f"{reason}:%"]
    # rows whose text the rejects kept first: a sampled rejects set should not hide the text
    with_text = f"select * from ledger{clause}{' and' if clause else ' where'} id in (select id from rejects)"
    rows = records(con, f"select * from ({with_text}) using sample reservoir({int(limit)} rows) "
                        f"repeatable ({int(seed)})", params)
    if len(rows) < limit:
        rest = f"select * from ledger{clause}{' and' if clause else ' where'} id not in (select id from rejects)"
        rows += records(con, f"select * from ({rest}) using sample reservoir({int(limit) - len(rows)} rows) "
                             f"repeatable ({int(seed)})", params)
    duplicates = duplicate_reasons(root)
    out = []
    for row in sorted(rows, key=lambda r: r["id"]):
        s = Sample(dict(row), dropped=True)
        text = con.execute("select text, meta from rejects where id = ? and stage = ? limit 1",
                           [row["id"], row["stage"]]).fetchone()
        if text:
            s.doc["text"], s.doc["meta"] = text
        else:
            s.notes.append("text not kept (rejects are sampled or off for this run)")
        if row["reason"] in duplicates and row["detail"]:
            twin = records(con, "select * from shards where id = ? limit 1", [row["detail"].split()[0]])
            s.kept_twin = twin[0] if twin else None
        out.append(s)
    return out
