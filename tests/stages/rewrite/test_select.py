"""synthetic_filter: which synthetic rows a corpus keeps; crawled rows always pass, and every
row it drops is a ledger entry with its reason."""

import json

import pyarrow as pa
import pytest

from pipeline.schema import BASE_SCHEMA
from stages.rewrite.select import SyntheticFilter


def _rows():
    rows = [{"id": "crawled", "text": "ls lists files", "source": "man", "uri": "u0", "kind": "doc", "meta": "{}"},
            {"id": "checked", "text": "Task: a\nCommand: ls -a", "source": "synthetic", "uri": "u1", "kind": "qa",
             "meta": json.dumps({"verified": "commands"})},
            {"id": "unchecked", "text": "Task: a\nCommand: ls -j", "source": "synthetic", "uri": "u2", "kind": "qa",
             "meta": json.dumps({"verified": None})}]
    return pa.Table.from_pylist(rows, schema=BASE_SCHEMA)


@pytest.mark.parametrize("keep, kept", [("all", ["crawled", "checked", "unchecked"]), ("verified", ["crawled", "checked"]),
                                        ("unverified", ["crawled", "unchecked"]), ("none", ["crawled"])])
def test_keeps_the_synthetic_rows_it_names(keep, kept):
    result = SyntheticFilter(keep).process(_rows())
    assert result.kept["id"].to_pylist() == kept
    dropped = [] if result.dropped is None else result.dropped.to_pylist()
    assert len(kept) + len(dropped) == 3
    assert all(d["reason"] == "synthetic_excluded" and d["detail"] == f"keep: {keep}" for d in dropped)


def test_a_wrong_choice_is_an_error():
    with pytest.raises(ValueError, match="keep must be one of"):
        SyntheticFilter("some")
