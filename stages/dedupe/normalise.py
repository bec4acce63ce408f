"""Text normalisation before shingling, chosen per document kind.

- `text` (configs, docs, code, web): lower-case. Shingles are made of words only
  (`stages/dedupe/minhash.py`), so whitespace, punctuation and case never make two documents differ.
- `log`: `text`, after masking what varies between lines of one event template with
  `stages/variable_mask.py` (`mask_digits`: the template miner's masking of numbers, times,
  addresses, ids, hex, month and weekday names, and the digits left inside words;
  `blk_-1608999687919862906` -> `blk_var`, `subdir51` -> `subdirvar`), each variable the word
  `var`. The lines of one template then shingle alike (template-aware dedupe, in the spirit of
  log parsers such as Drain, He et al. 2017); lines that are one event for the miner are one text
  here.

Documents of kind `other` (or none) get a kind from their content first (`detect_kinds`): `log`
when most of their first lines hold a time of day or a Unix epoch near the start, `config` when
most are `key = value`, `key: value` or `[section]` lines.

All of it runs over whole Arrow arrays (RE2, or numpy over the UTF-8 bytes), with no Python loop per
document.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.dedupe.minhash import text_bytes
from stages.variable_mask import WILDCARD, mask_digits

MODES = ("text", "log")
AUTO_KIND_MODES = {"log": "log"}  # every other kind: text
UNKNOWN_KINDS = ("other", "")  # kinds that `detect_kinds` may replace
# Whole lines: Arrow's regex count restarts each search where the last match ended, and `^` matches there.
# a line with a time of day or a Unix epoch near its start
_STAMPED_LINE = r"(?m)^[^\n]{0,64}?(?:\d{1,2}:\d\d:\d\d|\b1\d{9}\b|\b\d{6} \d{6}\b)[^\n]*"
_LINE = r"(?m)^[ \t]*\S[^\n]*"
_CODE_LINE = r"(?m)^[ \t]*[^\s#;][^\n]*"  # not blank, not a comment
_KEYED_LINE = r"(?m)^[ \t]*(?:[\w.\-/@]+[ \t]*[=:][^\n]*|\[[^\]\n]+\][ \t]*$)"
_DETECT_CHARS = 1000


def lower(text: pa.Array) -> pa.Array:
    """Lower-case: ASCII at memory speed, and full Unicode case folding only for the documents
    that hold characters of cased scripts beyond ASCII (most non-ASCII in system text is
    punctuation, which has no case)."""
    text = pc.ascii_lower(text)
    data, offsets = text_bytes(text)
    lead = np.flatnonzero(data >= 0xC3)
    if len(lead) == 0:
        return text
    b0 = data[lead]
    b1 = data[np.minimum(lead + 1, len(data) - 1)]
    cased = ((b0 <= 0xDF) & ~((b0 == 0xC3) & ((b1 == 0x97) | (b1 == 0xB7))))  # 2-byte letters
    cased |= (b0 == 0xE1) | (b0 == 0xF0) | ((b0 == 0xE2) & (b1 >= 0xB0) & (b1 <= 0xB3)) | ((b0 == 0xEF) & (b1 == 0xBC))
    docs = np.unique(np.searchsorted(offsets, lead[cased], side="right") - 1)
    if len(docs) == 0:
        return text
    if len(docs) == len(text):
        return pc.utf8_lower(text)
    mask = np.zeros(len(text), bool)
    mask[docs] = True
    lowered = pc.utf8_lower(text.filter(pa.array(mask)))
    return pc.replace_with_mask(text, pa.array(mask), lowered)


def text_mode(text: pa.Array) -> pa.Array:
    return lower(text)


def log_mode(text: pa.Array) -> pa.Array:
    return lower(pc.replace_substring(mask_digits.array(text), WILDCARD, "var"))


def looks_like_log(text: pa.Array) -> np.ndarray:
    """Whether at least half of the non-blank lines in a document's head carry a timestamp in their
    first 64 characters."""
    head = pc.utf8_slice_codeunits(text, 0, _DETECT_CHARS)
    lines = pc.count_substring_regex(head, _LINE).to_numpy(zero_copy_only=False)
    stamped = pc.count_substring_regex(head, _STAMPED_LINE).to_numpy(zero_copy_only=False)
    return (lines > 0) & (2 * stamped >= lines)


def looks_like_config(text: pa.Array) -> np.ndarray:
    """Whether at least 60% of the lines in a document's head that are neither blank nor comments
    are `key = value`, `key: value` or `[section]` lines (and there are two or more)."""
    head = pc.utf8_slice_codeunits(text, 0, _DETECT_CHARS)
    lines = pc.count_substring_regex(head, _CODE_LINE).to_numpy(zero_copy_only=False)
    keyed = pc.count_substring_regex(head, _KEYED_LINE).to_numpy(zero_copy_only=False)
    return (keyed >= 2) & (10 * keyed >= 6 * lines)


def detect_kinds(text: pa.Array, kinds: np.ndarray) -> np.ndarray:
    """Kinds for the documents of an unknown kind (`other` or none), from their content: `log`,
    `config`, or as they were."""
    unknown = np.flatnonzero(np.isin(kinds, UNKNOWN_KINDS))
    if len(unknown) == 0:
        return kinds
    subset = text.take(pa.array(unknown))
    found = np.where(looks_like_log(subset), "log", np.where(looks_like_config(subset), "config", kinds[unknown]))
    kinds = kinds.copy()
    kinds[unknown] = found
    return kinds


NORMALISERS = {"text": text_mode, "log": log_mode}


def kinds_of(kinds: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A kind column as strings, null as ""."""
    return np.asarray(kinds.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False), dtype=object)


def normalise(text: pa.Array, modes: np.ndarray) -> pa.Array:
    """Normalise each row with its mode; rows of one mode are done together."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = text.cast(pa.large_string())
    names = set(modes.tolist())
    if not names:
        return text
    if len(names) == 1:
        return NORMALISERS[names.pop()](text)
    parts, where = [], []
    for name in sorted(names):
        idx = np.flatnonzero(modes == name)
        parts.append(NORMALISERS[name](text.take(pa.array(idx))))
        where.append(idx)
    order = np.argsort(np.concatenate(where), kind="stable")
    return pa.concat_arrays([p.cast(pa.large_string()) for p in parts]).take(pa.array(order))
