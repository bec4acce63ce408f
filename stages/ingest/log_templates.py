"""Event templates of log messages: Drain (He et al., "Drain: An Online Log Parsing Approach with
Fixed Depth Tree", ICWS 2017), with a second pass over the groups it finds.

A message is masked (`stages/variable_mask.py`: numbers, addresses, ids become `<*>`), split into
tokens, and routed down a tree of fixed depth: first by its token count, then by its first tokens
(a token with a digit goes to the `<*>` branch). At the leaf, it joins the log group whose template
shares the largest fraction of tokens with it, if that fraction reaches `similarity`; the positions
where they differ become `<*>`. Otherwise it starts a group of its own. One change to Drain's
similarity: a masked variable, at a position where the template already has `<*>`, counts as
equal (Drain counts it as different, which splits events whose variables are dates or addresses).

`parse` mines a batch (a file, a work unit) and then revisits each group with all its messages in
hand, in the spirit of Brain (Yu et al., IEEE TSC 2023), which reads a position's values across
all messages of an event rather than one message at a time:

- split: a position where the group's messages hold only a few distinct words (no masked value,
  at most `max_split_values` of them, none that looks like an id or a path) holds constants that
  tell events apart (`Begin`/`End`, `HTTPS`/`SOCKS5`), so the group splits by them. A variable
  that takes at most three word values in a whole batch (three user names) splits too, as
  Loghub's ground truth often has it (`failures for admin`, `failures for root`);
- merge: groups whose templates share a constant token and align token for token except for runs
  that each hold a bare variable (`<*>`, `(<*>`) and at most one worded token are one event whose
  variable spans several tokens (`<*> bytes sent`, `<*> bytes (<*> KB) sent`); an optional
  `key=<*>` is no such run, so `rhost=<*>` and `rhost=<*> user=root` stay apart;
- lists: a run of one to three tokens repeated in a row (`blk_<*> blk_<*> blk_<*>`) is written
  once, so lists of any length are one event.

A template keeps the constant start and end of a position's values (`user=<*>`, `blk_<*>`).
Messages are mined once per distinct text and once per distinct masked text, so a batch costs
about as much as its distinct events. Templates are named by a hash of their text, so the same
event gets the same id in every work unit and every run; bench/log_templates.py measures grouping,
parsing and template accuracy on Loghub beside drain3.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field

from stages.variable_mask import WILDCARD, VariableMask

HAS_DIGIT = re.compile(r"\d")
_ID_LIKE = re.compile(r"\d\d|/|\\")  # two digits in a row or a path: a value, not a constant word
_EDGE = re.compile(r"[^A-Za-z0-9]")
_WORD = re.compile(r"[A-Za-z]")
_VARIABLES = re.compile("\0+")


def template_id(template: str) -> str:
    return hashlib.blake2b(template.encode(), digest_size=8).hexdigest()


@dataclass(eq=False)
class LogGroup:
    """One event: its template's tokens and how many messages it holds."""

    tokens: list[str]
    size: int = 0

    @property
    def template(self) -> str:
        return " ".join(self.tokens)


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    groups: list[LogGroup] = field(default_factory=list)


class TemplateMiner:
    """Drain with masking. `similarity`: the share of equal tokens for a message to join a group
    (Drain's `st`); `depth`: tree depth, so `depth - 2` leading tokens route a message;
    `max_children`: a node's fan-out before new tokens share the `<*>` branch;
    `max_split_values`: the most distinct words at a position that `parse` reads as constants."""

    def __init__(self, similarity: float = 0.7, depth: int = 4, max_children: int = 100,
                 max_split_values: int = 3):
        if depth < 3:
            raise ValueError("depth must be at least 3")
        self.similarity, self.depth, self.max_children = similarity, depth, max_children
        self.max_split_values = max_split_values
        self.root = _Node()
        self.groups: list[LogGroup] = []
        self.masker = VariableMask()

    def tokens(self, message: str) -> list[str]:
        return self.masker.tokens(message)

    # -- one message at a time (Drain) --------------------------------------------------------

    def add(self, message: str) -> LogGroup:
        """The group `message` joins now (its template may still widen as more messages come)."""
        return self._add(self.tokens(message), 1)

    def _add(self, tokens: list[str], count: int) -> LogGroup:
        leaf = self._leaf(tokens)
        group = self._best(leaf.groups, tokens)
        if group is None:
            group = LogGroup(list(tokens))
            leaf.groups.append(group)
            self.groups.append(group)
        else:
            group.tokens = [a if a == b else WILDCARD for a, b in zip(group.tokens, tokens)]
        group.size += count
        return group

    def _leaf(self, tokens: list[str]) -> _Node:
        node = self.root.children.setdefault(str(len(tokens)), _Node())
        for token in tokens[: self.depth - 2]:
            key = WILDCARD if HAS_DIGIT.search(token) or WILDCARD in token else token
            if key not in node.children and len(node.children) >= self.max_children:
                key = WILDCARD
            node = node.children.setdefault(key, _Node())
        return node

    def _best(self, groups: list[LogGroup], tokens: list[str]) -> LogGroup | None:
        best, best_key = None, (-1.0, -1)
        for group in groups:
            same = wild = 0
            for a, b in zip(group.tokens, tokens):
                if a == WILDCARD:
                    wild += 1
                    same += b == WILDCARD  # a masked variable where the template has one
                elif a == b:
                    same += 1
            score = same / len(tokens) if tokens else 1.0
            if (score, wild) > best_key:
                best, best_key = group, (score, wild)
        return best if best is not None and best_key[0] >= self.similarity else None

    # -- a batch --------------------------------------------------------------------------------

    def parse(self, messages: list[str]) -> list[LogGroup]:
        """Each message's group, after the second pass (see the module docstring): every message
        of the batch is read before any template is final. The miner's own groups (`add`) are
        left as they are."""
        by_text: dict[str, int] = {}
        text_of = [by_text.setdefault(m, len(by_text)) for m in messages]
        by_tokens: dict[tuple[str, ...], int] = {}
        tokens_of_text = [by_tokens.setdefault(tuple(self.tokens(m)), len(by_tokens)) for m in by_text]
        counts = [0] * len(by_tokens)
        for t in text_of:
            counts[tokens_of_text[t]] += 1
        distinct = list(by_tokens)
        drain = TemplateMiner(self.similarity, self.depth, self.max_children)
        members: dict[int, list[int]] = defaultdict(list)  # Drain's groups, as distinct token lists
        for i, (tokens, n) in enumerate(zip(distinct, counts)):
            members[id(drain._add(list(tokens), n))].append(i)
        events = [(part, _collapse(_template([distinct[i] for i in part])))
                  for idx in members.values() for part in self._split(idx, distinct)]
        final: list[LogGroup] = [None] * len(distinct)  # type: ignore[list-item]
        for idx, tokens in self._merge(events, counts):
            group = LogGroup(tokens, sum(counts[i] for i in idx))
            for i in idx:
                final[i] = group
        return [final[tokens_of_text[t]] for t in text_of]

    def _split(self, idx: list[int], distinct: list[tuple]) -> list[list[int]]:
        """`idx` (token lists of one length) split by the positions that hold a few constant words."""
        if len(idx) < 2:
            return [idx]
        keys = []
        for p in range(len(distinct[idx[0]])):
            values = {distinct[i][p] for i in idx}
            if 1 < len(values) <= self.max_split_values and not any(
                    WILDCARD in v or _ID_LIKE.search(v) for v in values):
                keys.append(p)
        if not keys:
            return [idx]
        parts: dict[tuple, list[int]] = defaultdict(list)
        for i in idx:
            parts[tuple(distinct[i][p] for p in keys)].append(i)
        return list(parts.values())

    @staticmethod
    def _merge(events: list[tuple[list[int], list[str]]], counts: list[int]) -> list[tuple[list[int], list[str]]]:
        """Events whose templates align except for runs that hold a variable (`_align`), joined,
        the larger first; events meet when they open with the same constant word."""
        events = sorted(events, key=lambda e: -sum(counts[i] for i in e[0]))
        kept: list[list] = []  # [distinct token lists, template, its worded tokens, its bare variables]
        by_first: dict[str, list[int]] = defaultdict(list)
        for idx, tokens in events:
            words, bare = _shape(tokens)
            key = next((t for t in tokens if WILDCARD not in t), "")
            for k in by_first[key]:
                other = kept[k]
                # each run holds a bare variable and at most one worded token: a quick no first
                joined = None if len(words ^ other[2]) > bare + other[3] else _align(other[1], tokens)
                if joined is not None:
                    other[0] = other[0] + idx
                    other[1] = joined
                    other[2], other[3] = _shape(joined)
                    break
            else:
                by_first[key].append(len(kept))
                kept.append([idx, tokens, words, bare])
        return [(idx, tokens) for idx, tokens, _, _ in kept]


def _shape(tokens: list[str]) -> tuple[frozenset[str], int]:
    """A template's worded tokens and its number of bare variables."""
    return (frozenset(t for t in tokens if _worded(t)),
            sum(WILDCARD in t and not _worded(t) for t in tokens))


def _align(a: list[str], b: list[str]) -> list[str] | None:
    """The template of `a` and `b` when they share a constant token and align token for token
    (longest common subsequence) except for runs that each hold a bare variable (`<*>`, `(<*>`)
    and at most one token with a word in it; such a run becomes one `<*>`. None otherwise."""
    if a == b:
        return a
    n, m = len(a), len(b)
    lcs = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = lcs[i], lcs[i + 1]
        for j in range(m - 1, -1, -1):
            if a[i] == b[j]:
                row[j] = below[j + 1] + 1
            else:
                row[j] = below[j] if below[j] >= row[j + 1] else row[j + 1]
    out, i, j, gap_a, gap_b = [], 0, 0, [], []

    def close_gap() -> bool:
        if gap_a or gap_b:
            worded = [_worded(t) for t in gap_a + gap_b]
            if sum(worded) > 1 or not any(WILDCARD in t and not w for t, w in zip(gap_a + gap_b, worded)):
                return False
            out.append(WILDCARD)
            gap_a.clear()
            gap_b.clear()
        return True

    while i < n or j < m:
        if i < n and j < m and a[i] == b[j]:
            if not close_gap():
                return None
            out.append(a[i])
            i, j = i + 1, j + 1
        elif j >= m or (i < n and lcs[i + 1][j] >= lcs[i][j + 1]):
            gap_a.append(a[i])
            i += 1
        else:
            gap_b.append(b[j])
            j += 1
    return out if close_gap() and any(WILDCARD not in t for t in out) else None


def _worded(token: str) -> bool:
    """Whether `token` holds a letter outside its variables (`user=<*>`, `KB)`; not `(<*>`)."""
    return bool(_WORD.search(token.replace(WILDCARD, "") if WILDCARD in token else token))


def _collapse(tokens: list[str]) -> list[str]:
    """A run of one to three tokens repeated in a row, holding a variable and a constant (a list
    of values: `blk_<*> blk_<*> blk_<*>`), written once: lists of any length are one event."""
    if not any(tokens[i] == tokens[i + n] for n in (1, 2, 3) for i in range(len(tokens) - n)):
        return tokens
    for n in (1, 2, 3):
        out, i = [], 0
        while i < len(tokens):
            unit = tokens[i:i + n]
            out.extend(unit)
            i += n
            if len(unit) == n and any(WILDCARD in t for t in unit) and any(map(_worded, unit)):
                while tokens[i:i + n] == unit:
                    i += n
        tokens = out
    return tokens


def _template(token_lists: list[tuple[str, ...]]) -> list[str]:
    """One template for token lists of one event: where they differ, the constant start and end
    that all share (cut at a non-alphanumeric character) around `<*>`."""
    first = token_lists[0]
    if len(token_lists) == 1:
        return list(first)
    out = []
    for p, token in enumerate(first):
        values = {t[p] for t in token_lists}
        out.append(token if len(values) == 1 else _common_edges(values))
    return out


def _common_edges(values: set[str]) -> str:
    """`<*>` with the start and the end that all `values` share, each cut after a character that
    is not a letter or digit (`user=root`, `user=guest` -> `user=<*>`)."""
    values = [v.replace(WILDCARD, "\0") for v in values]  # a variable is one character here
    prefix = os.path.commonprefix(values)
    prefix = prefix[: max((m.end() for m in _EDGE.finditer(prefix)), default=0)]
    rest = [v[len(prefix):] for v in values]
    suffix = os.path.commonprefix([v[::-1] for v in rest])
    suffix = suffix[: max((m.end() for m in _EDGE.finditer(suffix)), default=0)][::-1]
    if len(suffix) == min(len(v) for v in rest):
        suffix = ""  # all of one value: nothing left for the variable
    return _VARIABLES.sub(WILDCARD, prefix + "\0" + suffix)
