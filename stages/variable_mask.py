"""The variable parts of a line of system text, and the one placeholder that replaces them.

A log line is an event template filled with values: numbers, times, addresses, ids. Masking the
values makes the lines of one event alike, so the template miner groups them, the quality checks
count events, and near and semantic dedupe compare events rather than values. Every stage masks
with this module and nothing else, so a line is the same event everywhere.

Masked (`<*>`): UUIDs, MAC addresses, hex written with `0x`, hex ids of 8 or more characters that
hold a digit, IPv6 addresses, `host.domain:port`, numbers (signed, decimal, dotted or
colon-separated: `-7`, `3.14`, `10.0.0.1:80`, `15:16:01`) that no letter or digit touches, and
the names of months and weekdays (`Jun`, `JUNE`, `Sun`). A digit inside a word stays (`ssh2`,
`eth0`, `IPv4`, `12ms`), as Loghub's ground truth keeps it (Zhu et al., ISSRE 2023; Khan et al.,
ICSE 2022); next to `_` a number goes (`job_<*>`, `blk_<*>`, `attempt_<*>_m_<*>`).

The stages that compare lines (quality checks, near and semantic dedupe) use `mask_digits`, which
masks the digits left inside words too: two lines that are one event for the template miner are
one text for them, and so are lines that differ only in a node name or a numbered path
(`R02-M1-N0`, `subdir51`), which near dedupe needs (bench/dedupe_eval.py's re-valued logs).

One rule list, two engines: Python's `re` (`mask`, `VariableMask.tokens`) and RE2 over an Arrow
column (`VariableMask.array`) give the same text. Where two rules could match, the one that starts
first wins, then the one listed first. No rule crosses white space, so masking a line and masking
each of its tokens give the same tokens.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

WILDCARD = "<*>"
_H = "[0-9a-fA-F]"
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Sept Oct Nov Dec January February March April June July August " \
          "September October November December".split()
_WEEKDAYS = "Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_NAME_SET = {w for n in _MONTHS + _WEEKDAYS for w in (n, n.upper())}
# by first letter, longest first: one test of the first letter, not one per name
_NAMES = "|".join(first + "(?:" + "|".join(sorted((w[1:] for w in _NAME_SET if w[0] == first), key=lambda w: (-len(w), w)))
                  + ")" for first in sorted({w[0] for w in _NAME_SET}))
# Each rule: the characters that may not come just before it, its body, and whether it may end
# against a `_` (numbers: `attempt_1445144423722_0020_m_000002`, numbers joined by `_` being one);
# every other rule ends at a word's end. Python reads the edges as look-around. RE2 has none: there
# the character before is a group (or the start) that the replacement gives back, and so is a `_`
# after, which no other match could have started from. Bodies end on a letter or digit, so the two
# forms give the same text (tested on Loghub).
_WORD_CHAR = "A-Za-z0-9_"
RULES = [
    (_WORD_CHAR, rf"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}", False),  # UUID
    (_WORD_CHAR, rf"{_H}{{2}}(?:[:-]{_H}{{2}}){{5}}", False),  # MAC address
    (_WORD_CHAR, rf"0[xX]{_H}+", False),  # hex with 0x
    (_WORD_CHAR + ":.", rf"(?:{_H}{{1,4}}(?::{_H}{{1,4}}){{7}}|{_H}{{1,4}}(?::{_H}{{1,4}})*::(?:{_H}{{1,4}}(?::{_H}{{1,4}})*)?"
                        rf"|::{_H}{{1,4}}(?::{_H}{{1,4}})*)", False),  # IPv6
    (_WORD_CHAR + ".-", r"(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}:[0-9]+", False),  # host.domain:port
    ("A-Za-z0-9", r"[-+]?[0-9]+(?:[.,:][0-9]+)*(?:_[-+]?[0-9]+(?:[.,:][0-9]+)*)*", True),  # numbers, times, IPv4:port
    (_WORD_CHAR, "(?:[a-fA-F]{8,}[0-9]|"  # hex ids: 8 or more hex characters, a digit among them
     + "|".join(f"[a-fA-F]{{{i}}}[0-9]{_H}{{{7 - i},}}" for i in range(8)) + f"){_H}*", False),
    (_WORD_CHAR, f"(?:{_NAMES})", False),  # months and weekdays
]
# RE2: one group per rule for the character before, and one for a `_` after (nine in all, RE2's most)
PATTERN = "|".join(f"(?:(^|[^{before}]){body}" + (r"(_|\b))" if glued else r"\b)") for before, body, glued in RULES)
_GROUPS = [g for _, _, glued in RULES for g in (("before", "after") if glued else ("before",))]
REPLACEMENT = ("".join(f"\\{i + 1}" for i, g in enumerate(_GROUPS) if g == "before") + WILDCARD
               + "".join(f"\\{i + 1}" for i, g in enumerate(_GROUPS) if g == "after"))
# Every rule's left edge excludes a letter or digit before it: checked once, first, it skips the
# positions inside words (most of a line) without trying each rule there.
_COMPILED = re.compile("(?<![A-Za-z0-9])(?:" + "|".join(
    f"(?:(?<![{before}]){body}" + ("(?![A-Za-z0-9]))" if glued else r"\b)") for before, body, glued in RULES) + ")",
    re.ASCII)


_DIGITS = "[0-9]+"  # what is left of a number once the rules ran: digits inside a word


class VariableMask:
    """The masking, callable on a text; `tokens` gives a line's masked white-space separated
    tokens (the template miner's input) and `array` masks an Arrow column with RE2.

    `digits_in_words`: also mask the digits that the rules leave inside words (`ssh<*>`,
    `R<*>-M<*>`, `subdir<*>`), on top of the rules, for stages that compare lines rather than
    name their events: two lines that are one event for the template miner are then one text
    for them too, and lines that differ only in a node name or a numbered path are alike.

    Each distinct token is masked once and remembered (up to `cache_size` of them, then the
    memory starts again): log lines repeat their constant words, so most tokens are found, not
    matched."""

    def __init__(self, digits_in_words: bool = False, cache_size: int = 1 << 18):
        self.digits_in_words = digits_in_words
        self.cache: dict[str, str] = {}
        self.cache_size = cache_size

    def token(self, token: str) -> str:
        masked = self.cache.get(token)
        if masked is None:
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            masked = _COMPILED.sub(WILDCARD, token)
            if self.digits_in_words:
                masked = _DIGITS_COMPILED.sub(WILDCARD, masked)
            self.cache[token] = masked
        return masked

    def tokens(self, line: str) -> list[str]:
        get, token = self.cache.get, self.token
        return [get(t) or token(t) for t in line.split()]

    def __call__(self, text: str) -> str:
        """`text` with every variable replaced by `<*>`, its white space as it was."""
        get, token = self.cache.get, self.token
        return "".join(get(t) or token(t) for t in _SPACES.split(text))

    def array(self, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The same masking on every string of an Arrow column at once (RE2, no Python loop)."""
        texts = pc.replace_substring_regex(texts, PATTERN, REPLACEMENT)
        return pc.replace_substring_regex(texts, _DIGITS, WILDCARD) if self.digits_in_words else texts


_SPACES = re.compile(r"(\s+)")
_DIGITS_COMPILED = re.compile(_DIGITS)
mask = VariableMask()  # the template miner's: a digit inside a word stays, as in Loghub's templates
mask_digits = VariableMask(digits_in_words=True)  # the quality checks' and dedupe's: every digit goes
