"""Hard tokens: the literal parts of a document that change what it means but barely move a
sentence embedding. Sentence encoders are known to be nearly blind to negation (Ettinger 2020,
"What BERT is not") and to numbers (Wallace et al. 2019, "Do NLP models know numbers?"); SemDeDup
(Abbas et al. 2023) measures only with a cosine. So `find . -size +10M` and `find . -size 10M`,
`-exec stat {} +` and `-exec stat {} \\;`, `mkdir ~/temp` and `mkdir temp` embed at cosine 0.96 to
0.99. `semantic_dedupe` merges a pair above its cosine threshold only when the two agree on every
guarded category (its `guard` option).

Each category is a set of tokens per document, hashed to 64 bits (0 for an empty set), so the
decision compares two integers, not text. The default guard (`DEFAULT_GUARD`) is the literal code
of a document, which a paraphrase keeps as it is:

- `options`: command-line options (`-size`, `--force`, `-L`), case kept;
- `operators`: shell operators standing alone (`|`, `>`, `2>`, `;`, `\\;`, `+`, `&&`);
- `types`: file types asked of `find` (`-type f` against `-type d`);
- `paths`: absolute, home-relative, `./` and `../` paths, without a trailing slash (`~/temp`);
- `signed_numbers`: numbers written with a sign, as options' arguments are (`+10M` -> `+10`, `-7`);
- `negation`: whether the code negates (`!`, `\\!`, `-not`).

Three more are there to choose but not in the default, since prose says one thing many ways
(`1 hour`, `60 minutes`; `except`, `but not`; a name quoted or not) and they cost more true pairs
than false ones on the labelled sets (docs/benchmarks.md):

- `numbers`: every standalone number with its sign (`10MB` -> `10`, `seven` -> `7`);
- `negation_words`: whether the prose negates (`not`, `no`, `without`, `except`, `n't`, ...);
- `quoted`: the strings in quotes, lower-cased.

In templated kinds (`config`, `log`: one template filled with other values is the duplicate that
semantic dedupe is there to find), values are not hard: they are masked by
`stages/variable_mask.py` (`mask_digits`, as `near_dedupe` masks log lines), and `numbers` and
`negation_words` (a boolean `no`) are empty.
"""

from __future__ import annotations

import hashlib
import re

from stages.variable_mask import mask_digits

CATEGORIES = ("options", "operators", "types", "paths", "signed_numbers", "negation", "numbers", "negation_words",
              "quoted")
DEFAULT_GUARD = CATEGORIES[:6]
TEMPLATE_KINDS = ("config", "log")

_QUOTED = re.compile(r"'([^'\n]{1,80})'|\"([^\"\n]{1,80})\"|`([^`\n]{1,80})`|\u201c([^\u201d\n]{1,80})\u201d"
                     r"|\u2018([^\u2019\n]{1,80})\u2019")
_QUOTES = re.compile(r"['\"`\u201c\u201d\u2018\u2019]")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven "
                                                 "twelve".split())}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])([+-]?)(\d+(?:\.\d+)*)")
_OPTION = re.compile(r"(?<!\S)(--?[A-Za-z][\w-]*)")
_NEGATION = re.compile(r"(?<!\S)\\?!(?!\S)|(?<!\S)-not\b")
_NEGATION_WORD = re.compile(r"\b(?:not|no|never|none|nor|neither|without|except|excluding|exclude|excludes|non"
                            r"|cannot)\b|n't\b", re.IGNORECASE)
_TYPE = re.compile(r"(?<!\S)-x?type\s+([a-zA-Z])\b")
_PATH = re.compile(r"(?<![\w./~-])((?:~|\.\.?)?/[\w.@%+*?\-/~]*)")
_OPERATOR = re.compile(r"(?<!\S)(\|\||\||&&|>>|2>&1|2>|>|<|\\;|;|\+)(?!\S)")
_NEGATED = frozenset(["negated"])


def hard_tokens(text: str, template: bool = False) -> dict[str, frozenset[str]]:
    """The document's hard tokens by category (`template`: a templated kind, its values masked)."""
    if template:
        text = mask_digits(text)
    quoted = (next(g for g in m.groups() if g is not None).strip().lower() for m in _QUOTED.finditer(text))
    plain = _QUOTES.sub(" ", text)
    numbers = frozenset() if template else frozenset(
        sign + n for sign, n in _NUMBER.findall(_NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], plain)))
    return {
        "options": frozenset(_OPTION.findall(plain)),
        "operators": frozenset(_OPERATOR.findall(plain)),
        "types": frozenset(_TYPE.findall(plain)),
        "paths": frozenset(p.rstrip(".,:;)/") or p for p in _PATH.findall(plain)),
        "signed_numbers": frozenset(n for n in numbers if n[0] in "+-"),
        "negation": _NEGATED if _NEGATION.search(plain) else frozenset(),
        "numbers": numbers,
        "negation_words": _NEGATED if not template and _NEGATION_WORD.search(plain) else frozenset(),
        "quoted": frozenset(q for q in quoted if q),
    }


def token_hash(tokens: frozenset[str]) -> int:
    """64 bits of the sorted set (0: empty), the same on every machine and run."""
    if not tokens:
        return 0
    digest = hashlib.blake2b("\0".join(sorted(tokens)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def hashes(text: str, template: bool = False) -> list[int]:
    """One 64-bit hash per category, in `CATEGORIES` order."""
    tokens = hard_tokens(text, template)
    return [token_hash(tokens[c]) for c in CATEGORIES]
