"""Gopher, C4 and FineWeb rules on inline texts: the exact drop reason, and a positive case."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.quality.c4 import C4Filter
from stages.quality.fineweb import FineWebFilter
from stages.quality.gopher import GopherQuality, GopherRepetition

PROSE = (
    "The scheduler decides which process runs next on each processor. It keeps a queue of runnable "
    "tasks for every core and picks the one that has waited longest relative to its weight. When a task "
    "blocks on input or output, it leaves the queue; when the data arrives, the kernel wakes it and puts "
    "it back. Administrators can change the weight of a task with the nice command, and they can pin a "
    "task to some cores with taskset. Real-time tasks have their own queue and always run first.\n\n"
    "Each of these choices has a cost that is worth measuring before it is changed in production."
)


def batch(*texts: str, kind: str = "doc") -> pa.Table:
    n = len(texts)
    return pa.table({"id": [str(i) for i in range(n)], "text": list(texts), "kind": [kind] * n,
                     "uri": [f"mem://{i}" for i in range(n)]})


def reasons(stage, table: pa.Table) -> list:
    return stage.decide(stage.signal(table))[0]


def test_gopher_quality_keeps_prose_and_names_each_rule():
    stage = GopherQuality()
    assert reasons(stage, batch(PROSE)) == [None]
    short = "Too short to be a document worth keeping."
    no_stop = " ".join(["kernel scheduler process queue"] * 20)
    hashes = PROSE + " #tag" * 40
    blob = "Qk1hZ2ljQmxvYlRoYXRJc05vdFRleHQ=" * 3 + " " + PROSE
    got = reasons(stage, batch(short, no_stop, hashes, blob))
    assert got == ["gopher_short_doc", "gopher_enough_stop_words", "gopher_symbol_ratio", None]
    long_words = " ".join(["the", "of", "and"] + ["abcdefghijklmnopqrstuvwxyz"] * 60)
    assert reasons(stage, batch(long_words)) == ["gopher_long_words"]


def test_none_disables_a_rule_and_other_kinds_pass():
    short = "Too short to be a document worth keeping."
    assert reasons(GopherQuality(min_words=None, min_stop_words=None), batch(short)) == [None]
    table = GopherQuality().signal(batch(short, kind="log"))
    assert table["quality.gopher.words"].null_count == 1  # not measured for a log
    assert GopherQuality().decide(table)[0] == [None]


def test_gopher_repetition():
    stage = GopherRepetition()
    assert reasons(stage, batch(PROSE)) == [None]
    repeated = "\n".join(["Click here to subscribe to our newsletter today"] * 10 + [PROSE])
    assert reasons(stage, batch(repeated)) == ["gopher_dup_lines"]
    ngrams = PROSE + " " + " ".join(["buy cheap watches online now"] * 30)
    got = reasons(GopherRepetition(max_dup_lines=None, max_dup_line_chars=None), batch(ngrams))
    assert got == ["gopher_top_2gram"]
    got = reasons(GopherRepetition(max_dup_lines=None, max_dup_line_chars=None, max_top_2gram=None,
                                   max_top_3gram=None, max_top_4gram=None), batch(ngrams))
    assert got == ["gopher_dup_5gram"]


def test_c4_rules():
    stage = C4Filter()
    assert reasons(stage, batch(PROSE)) == [None]
    assert reasons(stage, batch(PROSE + "\nLorem ipsum dolor sit amet.")) == ["c4_lorem_ipsum"]
    assert reasons(stage, batch(PROSE + "\nfunction f() { return 1; }")) == ["c4_curly_bracket"]
    assert reasons(C4Filter(curly_bracket=False), batch(PROSE + "\nint x = { 1 };")) == [None]
    nav = "Home\nAbout us\nContact\nThis site uses cookies. Read our privacy policy.\nLogin"
    assert reasons(stage, batch(nav)) == ["c4_too_few_sentences"]


def test_fineweb_rules():
    stage = FineWebFilter()
    assert reasons(stage, batch(PROSE)) == [None]
    menu = "\n".join(["Home", "Products", "Blog", "Careers", "Press", "Contact us today."])
    assert reasons(stage, batch(menu)) == ["fineweb_short_lines"]
    listing = "\n".join(f"item number {i} of the list without an end mark and more words" for i in range(20))
    assert reasons(stage, batch(listing)) == ["fineweb_line_punct"]
    dup = PROSE + "\n" + "\n".join(["All rights reserved by the company and its partners."] * 6)
    assert reasons(stage, batch(dup)) == ["fineweb_dup_line_chars"]


@pytest.mark.parametrize("stage", [GopherQuality(), GopherRepetition(), C4Filter(), FineWebFilter()])
def test_decide_reads_columns_only(stage):
    scored = stage.signal(batch(PROSE, "short one"))
    for column in stage.columns():
        assert column in scored.column_names
    assert stage.decide(scored.drop_columns(["text"]))[0] == reasons(stage, batch(PROSE, "short one"))
