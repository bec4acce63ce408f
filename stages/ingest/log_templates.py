"""Event templates of log messages: Drain (He et al., "Drain: An Online Log Parsing Approach with
Fixed Depth Tree", ICWS 2017).

A message is masked (numbers, addresses, ids become `<*>`), split into tokens, and routed down a
tree of fixed depth: first by its token count, then by its first tokens (a token with a digit goes
to the `<*>` branch). At the leaf, it joins the log group whose template shares the largest
fraction of tokens with it, if that fraction reaches `similarity`; the positions where they differ
become `<*>`. Otherwise it starts a group of its own. One change to Drain's similarity: a token
masked as a variable, at a position where the template already has `<*>`, counts as equal
(Drain counts it as different, which splits events whose variables are dates or addresses).
bench/log_templates.py measures grouping accuracy on Loghub against Drain's published figures.

Templates are named by a hash of their text, so the same event gets the same id in every work unit
and every run; the near-dedupe stage can shingle template ids instead of raw lines.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

WILDCARD = "<*>"
# Variables that are never part of an event's constant text. Order matters: longer forms first.
MASKS = [
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),  # UUID
    re.compile(r"\b(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}\b"),  # MAC address
    re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?![\w.])"),  # IPv4 with an optional port
    re.compile(r"(?<![\w.-])(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}:\d+\b"),  # host:port
    re.compile(r"\b0[xX][0-9a-fA-F]+\b"),  # hex with a 0x
    re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"),  # hex ids
    re.compile(r"(?<![A-Za-z0-9])[-+]?\d+(?:[.,:]\d+)*(?![A-Za-z0-9])"),  # numbers, times, versions
]


MASK = re.compile("|".join(f"(?:{p.pattern})" for p in MASKS))  # one pass; at a position the first wins
HAS_DIGIT = re.compile(r"\d")


def mask(message: str) -> str:
    return MASK.sub(WILDCARD, message)


def template_id(template: str) -> str:
    return hashlib.blake2b(template.encode(), digest_size=8).hexdigest()


@dataclass
class LogGroup:
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
    `max_children`: a node's fan-out before new tokens share the `<*>` branch."""

    def __init__(self, similarity: float = 0.7, depth: int = 4, max_children: int = 100):
        if depth < 3:
            raise ValueError("depth must be at least 3")
        self.similarity, self.depth, self.max_children = similarity, depth, max_children
        self.root = _Node()
        self.groups: list[LogGroup] = []

    @staticmethod
    def tokens(message: str) -> list[str]:
        # every mask needs a digit and none spans white space: only tokens with a digit are masked
        return [MASK.sub(WILDCARD, t) if HAS_DIGIT.search(t) else t for t in message.split()]

    def add(self, message: str) -> LogGroup:
        tokens = self.tokens(message)
        leaf = self._leaf(tokens)
        group = self._best(leaf.groups, tokens)
        if group is None:
            group = LogGroup(list(tokens))
            leaf.groups.append(group)
            self.groups.append(group)
        else:
            group.tokens = [a if a == b else WILDCARD for a, b in zip(group.tokens, tokens)]
        group.size += 1
        return group

    def _leaf(self, tokens: list[str]) -> _Node:
        node = self.root.children.setdefault(str(len(tokens)), _Node())
        for token in tokens[: self.depth - 2]:
            key = WILDCARD if HAS_DIGIT.search(token) else token
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
