"""Where the trigger strings of a rule set occur in a text, found in one pass for all of them.

A detector names lower-case strings (its triggers, e.g. `akia`, `ghp_`, `password`) one of which
a line must hold for its pattern to run there. Looking for each with `str.find` costs a scan of
the whole text for every trigger it lacks, some ninety scans per document; an Aho-Corasick
automaton of all of them (ahocorasick-rs) reports every occurrence of every trigger in one scan,
and the rules whose triggers did not occur are never run (bench/redaction.py measures both).
Single characters (`.`, `:`, `@`) stay out of the automaton: they occur on nearly every line,
and `str.find` answers for them at their first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable

from ahocorasick_rs import AhoCorasick


class Triggers:
    def __init__(self, triggers: Iterable[str]):
        triggers = sorted(set(triggers))
        self.chars = [t for t in triggers if len(t) == 1]
        self.words = [t for t in triggers if len(t) > 1]
        self.automaton = AhoCorasick(self.words) if self.words else None

    def __reduce__(self):  # the automaton does not pickle: a Ray worker builds its own
        return Triggers, (self.chars + self.words,)

    def scan(self, lower: str) -> Hits:
        """The occurrences of every trigger in `lower` (the lower-cased text)."""
        return Hits(self, lower)

    def rescan(self, lower: str) -> Hits:
        """The lines of `lower` (a text changed by a redaction) that hold a trigger, each trigger
        looked for with `str.find` when a rule asks for its lines: after a redaction only the few
        rules left to run do, cheaper than every trigger anew when the text is short and dense
        with findings."""
        return Hits(self, lower, scan=False)


class Hits:
    """Which triggers a text holds, and the lines that hold some of them."""

    def __init__(self, triggers: Triggers, lower: str, scan: bool = True):
        self.lower = lower
        self.at: dict[str, list[int]] = {}  # a word -> where it starts, ascending (without `scan`: none)
        self.present: set[str] | None = None  # the triggers the text holds (without `scan`: unknown)
        if scan:
            if triggers.automaton is not None:
                words = triggers.words
                for i, start, _ in triggers.automaton.find_matches_as_indexes(lower, overlapping=True):
                    self.at.setdefault(words[i], []).append(start)
            self.present = set(self.at) | {c for c in triggers.chars if c in lower}
        self._lines: dict[tuple[tuple[str, ...], int], list[tuple[int, int]]] = {}

    def lines(self, triggers: tuple[str, ...], after: int = 0) -> list[tuple[int, int]]:
        """The spans of the lines that hold one of `triggers`, each with the `after` lines that
        follow it, adjacent ones merged (a pattern's cost is then paid on those lines only, not at
        every position of a long document)."""
        if (triggers, after) not in self._lines:
            spans = [span for t in triggers if self.present is None or t in self.present
                     for span in self._trigger_lines(t)]
            for _ in range(after):
                spans = [(start, self._line_end(end + 1)) if end < len(self.lower) else (start, end)
                         for start, end in spans]
            spans.sort()
            merged: list[list[int]] = []
            for start, end in spans:
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._lines[triggers, after] = [(a, b) for a, b in merged]
        return self._lines[triggers, after]

    def _line_end(self, at: int) -> int:
        end = self.lower.find("\n", at)
        return len(self.lower) if end < 0 else end

    def _trigger_lines(self, trigger: str):
        lower, end = self.lower, -1
        if trigger in self.at:
            for at in self.at[trigger]:
                if at > end:
                    end = lower.find("\n", at)
                    end = len(lower) if end < 0 else end
                    yield lower.rfind("\n", 0, at) + 1, end
            return
        at = lower.find(trigger)
        while at >= 0:
            end = lower.find("\n", at)
            end = len(lower) if end < 0 else end
            yield lower.rfind("\n", 0, at) + 1, end
            at = lower.find(trigger, end)
