"""robots.txt as RFC 9309 (the Robots Exclusion Protocol) defines it.

The group of the most specific matching user-agent applies (falling back to `*`); within it the
longest matching rule wins, `allow` on a tie; `*` matches any run of characters and `$` anchors the
end. A robots.txt that is missing (4xx) allows everything; one that cannot be fetched (5xx, network
error) disallows everything (RFC 9309 2.3.1.3-4). `Crawl-delay` is not in the RFC but widely used:
it is read and may only slow the crawler down. Python's `urllib.robotparser` applies the first
matching rule in file order instead of the longest, so it is not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least the first 500 KiB


@dataclass
class Rule:
    allow: bool
    path: str
    pattern: re.Pattern = field(repr=False)


def _pattern(path: str) -> re.Pattern:
    anchored = path.endswith("$")
    body = path[:-1] if anchored else path
    regex = "".join(".*" if c == "*" else re.escape(c) for c in body)
    return re.compile(regex + ("$" if anchored else ""))


def _normalise(path: str) -> str:
    """Percent-encode the same way on both sides, so `/a%7Eb` and `/a~b` compare equal."""
    return quote(unquote(path), safe="/*$?=&;:@!,'()+~")


@dataclass
class RobotsRules:
    rules: list[Rule] = field(default_factory=list)
    crawl_delay: float | None = None
    disallow_all: bool = False

    def allowed(self, url: str) -> bool:
        if self.disallow_all:
            return False
        parts = urlsplit(url)
        path = _normalise((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        if path == "/robots.txt":
            return True
        best: Rule | None = None
        for rule in self.rules:
            if rule.pattern.match(path) and (best is None or len(rule.path) > len(best.path)
                                             or (len(rule.path) == len(best.path) and rule.allow)):
                best = rule
        return best is None or best.allow


ALLOW_ALL = RobotsRules()
DISALLOW_ALL = RobotsRules(disallow_all=True)


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """The rules of `text` that apply to `user_agent` (its product token, e.g. `sigma-crawler`)."""
    agent = user_agent.split("/")[0].strip().lower()
    groups: list[tuple[list[str], list[Rule], float | None]] = []
    agents: list[str] = []
    rules: list[Rule] = []
    delay: float | None = None
    in_rules = False
    for raw in text[:MAX_BYTES].splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if in_rules:  # a user-agent line after rules starts a new group
                groups.append((agents, rules, delay))
                agents, rules, delay, in_rules = [], [], None, False
            agents.append(value.lower())
        elif key in ("allow", "disallow") and agents:
            in_rules = True
            if value:  # an empty disallow allows everything: no rule
                path = _normalise(value if value.startswith(("/", "*")) else "/" + value)
                rules.append(Rule(key == "allow", path, _pattern(path)))
        elif key == "crawl-delay" and agents:
            in_rules = True
            try:
                delay = max(0.0, float(value))
            except ValueError:
                pass
    if agents:
        groups.append((agents, rules, delay))
    # RFC 9309 2.2.1: every group that names the agent applies, merged; else the `*` groups
    mine = [g for g in groups if agent in g[0]] or [g for g in groups if "*" in g[0]]
    merged = [r for g in mine for r in g[1]]
    delays = [g[2] for g in mine if g[2] is not None]
    return RobotsRules(merged, max(delays) if delays else None)


def rules_for_status(status: int, text: str, user_agent: str) -> RobotsRules:
    if 200 <= status < 300:
        return parse_robots(text, user_agent)
    if 400 <= status < 500:
        return ALLOW_ALL
    return DISALLOW_ALL
