"""Every threshold filter declares its rules; decide, thresholds and the manifest read them."""

import inspect
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.config import load_job
from pipeline.manifest import declared
from pipeline.stage import Filter
from stages.quality.basic import BasicFilter
from stages.quality.composite import CompositeScore
from stages.registry import STAGES, build_stages

ROOT = Path(__file__).resolve().parents[3]
RULED = sorted((c for c in STAGES.values() if issubclass(c, Filter) and c.rules), key=lambda c: c.name)


@pytest.mark.parametrize("cls", RULED, ids=lambda c: c.name)
def test_each_rule_is_a_keyword_that_none_disables(cls):
    params = inspect.signature(cls.__init__).parameters
    required = {n: "m" for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty}
    if cls is CompositeScore:
        required = {"weights": {"quality.score": 1.0}}
    for rule in cls.rules:
        assert rule.option in params, f"{cls.name}: rule {rule.reason} reads no keyword {rule.option}"
        assert rule.reason in cls(**required).reasons()
    off = cls(**required, **{r.option: None for r in cls.rules})
    assert off.thresholds() == []
    on = cls(**required, **{r.option: 1 for r in cls.rules})
    assert [t["reason"] for t in on.thresholds()] == [r.reason for r in cls.rules]


def test_every_filter_of_the_default_job_reports_its_thresholds():
    stages = build_stages(load_job(ROOT / "configs" / "local-system.yaml").stages)
    thresholds = declared(stages)["thresholds"]
    ruled = {s.name for s in stages if isinstance(s, Filter) and s.rules}
    assert ruled == {"basic_filter", "system_checks", "language_filter", "gopher_quality", "gopher_repetition",
                     "fineweb_filter"}
    assert {t["stage"] for t in thresholds} == ruled
    assert {"stage": "gopher_quality", "column": "quality.gopher.words", "op": "min", "value": 20,
            "reason": "gopher_short_doc"} in thresholds


def test_the_shared_decide_keeps_the_first_broken_rule_and_its_detail():
    f = BasicFilter(min_chars=5, max_chars=30, min_printable=0.9)
    batch = f.signal(pa.table({"text": pa.array(["tiny", "x" * 40, "ok\x01\x02\x03 text", "fine text"],
                                                pa.large_string())}))
    reasons, details = f.decide(batch)
    assert reasons == ["too_short", "too_long", "low_printable", None]
    assert details == ["4 chars < 5", "40 chars > 30", "0.700 < 0.9", None]


def test_rules_pass_rows_of_other_kinds_and_unmeasured_rows():
    f = CompositeScore({"quality.score": 1.0}, min_score=0.5, kinds=["doc"])
    batch = f.signal(pa.table({"kind": ["doc", "log", "doc"], "quality.score": pa.array([0.2, 0.1, None], pa.float32())}))
    reasons, details = f.decide(batch)
    assert reasons == ["low_composite_score", None, None] and details[0] == "0.200 < 0.5"
