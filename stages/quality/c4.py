"""C4's page rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified
Text-to-Text Transformer", section 2.2, "Colossal Clean Crawled Corpus").

C4 removes lines (no terminal punctuation, fewer than 3 words, mentioning "javascript", cookie
and policy notices), then drops pages with fewer than 5 sentences left, pages containing "lorem
ipsum", and pages containing a curly bracket. Here a filter keeps or drops whole documents
without rewriting them: `quality.c4.sentences` counts the sentences in the lines C4 would keep,
and `quality.c4.kept_lines` is the share of lines it would keep. C4's bad-words list is not
applied (it is a download, and system text needs no such list).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from pipeline.stage import Rule
from stages.quality.rule_filter import PROSE_KINDS, RuleFilter
from stages.quality.text_measures import TERMINAL, lines

P = "quality.c4."
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


class C4Filter(RuleFilter):
    """C4 page rules as a document filter: fewer than `min_sentences` sentences in the lines C4
    keeps (`c4_too_few_sentences`), a share of kept lines under `min_kept_lines` (`c4_kept_lines`,
    off by default: C4 itself has no such rule), "lorem ipsum" (`c4_lorem_ipsum`), a curly
    bracket (`c4_curly_bracket`, a rule that would drop every page of code or JSON: off for the
    system preset). `None` or `False` disables a rule."""

    name = "c4_filter"
    signals = {P + "sentences": pa.int32(), P + "kept_lines": pa.float32(), P + "lorem_ipsum": pa.int8(),
               P + "curly_brackets": pa.int32()}
    rules = (
        Rule("c4_lorem_ipsum", P + "lorem_ipsum", "max", "lorem_ipsum", fixed=0),
        Rule("c4_curly_bracket", P + "curly_brackets", "max", "curly_bracket", fixed=0),
        Rule("c4_too_few_sentences", P + "sentences", "min", "min_sentences"),
        Rule("c4_kept_lines", P + "kept_lines", "min", "min_kept_lines"),
    )

    def __init__(self, min_sentences: int | None = 5, min_kept_lines: float | None = None,
                 min_words_per_line: int = 3, lorem_ipsum: bool = True, curly_bracket: bool = True,
                 kinds: Sequence[str] | None = PROSE_KINDS):
        super().__init__(kinds)
        self.min_sentences, self.min_kept_lines = min_sentences, min_kept_lines
        self.min_words_per_line = min_words_per_line
        self.lorem_ipsum, self.curly_bracket = lorem_ipsum, curly_bracket

    def _kept(self, line: str) -> bool:
        if not line.endswith(TERMINAL) or line.endswith("..."):
            return False
        if len(line.split()) < self.min_words_per_line:
            return False
        low = line.lower()
        return "javascript" not in low and not any(p in low for p in POLICY)

    def measure(self, text: str, kind=None, uri=None) -> dict[str, float]:
        rows = lines(text)
        kept = [r for r in rows if self._kept(r)]
        return {
            P + "sentences": sum(len(SENTENCE_END.findall(r)) for r in kept),
            P + "kept_lines": len(kept) / max(len(rows), 1),
            P + "lorem_ipsum": int("lorem ipsum" in text.lower()),
            P + "curly_brackets": text.count("{") + text.count("}"),
        }
