import pyarrow as pa

from stages.quality.basic import CHARS, PRINTABLE, BasicFilter


def test_reasons_and_signals(loghub):
    log = (loghub / "Apache" / "Apache_2k.log").read_text()[:5000]
    batch = pa.table({"id": ["ok", "short", "garbage", "long"],
                      "text": [log, "tiny", "\x00\x01\x02 looks like text but is mostly control \x03" + "\x04" * 50,
                               "y" * 7000]})
    result = BasicFilter(min_chars=20, max_chars=6000, min_printable=0.9).process(batch)
    assert result.kept["id"].to_pylist() == ["ok"]
    assert dict(zip(result.dropped["id"].to_pylist(), result.dropped["reason"].to_pylist())) == {
        "short": "too_short", "garbage": "low_printable", "long": "too_long"}
    assert result.kept[CHARS].to_pylist() == [len(log)]
    assert result.kept[PRINTABLE].to_pylist()[0] == 1.0


def test_none_disables_a_threshold():
    batch = pa.table({"id": ["short"], "text": ["tiny"]})
    assert BasicFilter(min_chars=None).process(batch).kept.num_rows == 1
