"""One masking for every stage: the same text from Python's re, from RE2 over an Arrow column, and
token by token, on real Loghub logs and /etc configs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stages.variable_mask import VariableMask, mask, mask_digits


@pytest.fixture(scope="module")
def real_lines(loghub):
    lines = []
    for path in sorted(loghub.glob("*/*_2k.log")):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines


@pytest.mark.parametrize("masker", [mask, mask_digits], ids=["mask", "mask_digits"])
def test_python_arrow_and_token_masking_agree_on_real_logs(real_lines, masker):
    whole = [masker(line) for line in real_lines]
    assert masker.array(pa.array(real_lines)).to_pylist() == whole
    fresh = VariableMask(masker.digits_in_words, cache_size=1000)  # a small cache that fills and starts again
    assert [fresh.tokens(line) for line in real_lines] == [m.split() for m in whole]
    document = "\n".join(real_lines[:3000])
    assert masker(document) == "\n".join(whole[:3000])


def test_masked_and_kept():
    cases = {
        "Accepted password for root from 10.0.0.1 port 4022 ssh2": "Accepted password for root from <*> port <*> ssh2",
        "blk_-1608999687919862906 job_0012 node-246 eth0 IPv4 12ms": "blk_<*> job_<*> node-<*> eth0 IPv4 12ms",
        "uuid 123e4567-e89b-12d3-a456-426614174000 mac 00:1a:2b:3c:4d:5e": "uuid <*> mac <*>",
        "at 0x7fed806eb5d id deadbeef12 word deadbeef": "at <*> id <*> word deadbeef",
        "fe80::1 and 2001:db8::8a2e:370:7334 but std::vector": "<*> and <*> but std::vector",
        "proxy.cse.cuhk.edu.hk:5070 at 15:16:01.123 v1.2.3 -7 +3.5": "<*> at <*> v1.<*> <*> <*>",
        "Sun Jul 17 2005 JUNE 1 May not": "<*> <*> <*> <*> <*> <*> <*> not",
        "size=12,count=3 [12] (1.5).": "size=<*>,count=<*> [<*>] (<*>).",
    }
    for line, masked in cases.items():
        assert mask(line) == masked, line
    assert mask_digits("R02-M1-N0-C:J12-U11 subdir51 ssh2 port 22") == "R<*>-M<*>-N<*>-C:J<*>-U<*> subdir<*> ssh<*> port <*>"


def test_lines_that_are_one_event_for_the_miner_are_one_text_for_near_dedupe(real_lines):
    """Near dedupe's log normalisation masks more than the miner (the digits inside words), never
    less: lines the miner masks alike, it normalises alike."""
    from stages.dedupe.normalise import log_mode
    from stages.ingest.log_templates import TemplateMiner

    miner = TemplateMiner()
    normalised = log_mode(pa.array(real_lines)).to_pylist()
    by_tokens = {}
    for line, norm in zip(real_lines, normalised):
        by_tokens.setdefault(tuple(miner.tokens(line)), set()).add(" ".join(norm.split()))
    assert all(len(texts) == 1 for texts in by_tokens.values())
    assert len(set(normalised)) < len(by_tokens) < len(set(real_lines)) / 3
