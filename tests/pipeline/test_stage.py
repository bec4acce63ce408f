import numpy as np
import pyarrow as pa

from pipeline.stage import first_of_groups, partitions_for, split_dropped


def test_split_dropped_keeps_order_and_reasons():
    t = pa.table({"id": ["a", "b", "c", "d"]})
    r = split_dropped(t, [None, "too_short", None, "x"], [None, "3 chars", None, None])
    assert r.kept["id"].to_pylist() == ["a", "c"]
    assert r.dropped["id"].to_pylist() == ["b", "d"]
    assert r.dropped["reason"].to_pylist() == ["too_short", "x"]
    assert r.dropped["detail"].to_pylist() == ["3 chars", None]
    assert split_dropped(t, [None] * 4).dropped is None


def test_first_of_groups():
    keys = np.array(["a", "a", "b", "c", "c", "c"], dtype=object)
    assert first_of_groups(keys).tolist() == [0, 0, 2, 3, 3, 3]
    assert first_of_groups(np.array([], dtype=object)).tolist() == []


def test_partitions_for():
    assert partitions_for(0) == 1 and partitions_for(10, 10) == 1 and partitions_for(11, 10) == 2
