"""Filter stages that score every document with a trained fastText classifier (a column) and
threshold it in a separate decision, as DCLM and Dolma do: `domain_classifier` writes
`domain.score`, `quality_classifier` writes `quality.score`. Train the models with
`sigma classifier train`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from pipeline.stage import Filter, Resources, Rule, set_columns
from stages.quality.classifier import Classifier, model_file


DETAIL = "{column}={value:.3f} < {threshold}"


class ClassifierFilter(Filter):
    column: ClassVar[str] = "score"
    resources = Resources(batch_size=1024, actor=True)

    def __init__(self, model: str, min_score: float | None = 0.5, kinds: Sequence[str] | None = None,
                 max_chars: int = 4000):
        self.model, self.min_score, self.max_chars = str(model), min_score, max_chars
        self.kinds = None if kinds is None else list(kinds)
        self._classifier = None

    def columns(self) -> dict[str, pa.DataType]:
        return {self.column: pa.float32()}

    def __getstate__(self):
        return {**self.__dict__, "_classifier": None}

    def check(self) -> None:
        if not model_file(self.model).exists():
            raise ValueError(f"model {self.model} not found (train one with `sigma classifier train`)")

    def setup(self) -> None:
        # loaded here, not in the constructor: `sigma refilter` builds the stage to re-decide over
        # stored scores, and needs no model for that
        if self._classifier is None:
            self._classifier = Classifier.load(self.model)
            self._classifier.max_chars = self.max_chars

    def model_manifest(self) -> dict:
        path = Path(self.model) / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def signal(self, batch: pa.Table) -> pa.Table:
        self.setup()
        scores = self._classifier.score(batch["text"].to_pylist())
        return set_columns(batch, {self.column: pa.array(scores, pa.float32())})


class DomainClassifier(ClassifierFilter):
    """System-domain score (`domain.score`, the probability that a document is system text);
    drops documents under `min_score` with reason `not_system_domain`."""

    name = "domain_classifier"
    column = "domain.score"
    rules = (Rule("not_system_domain", column, "min", "min_score", detail=DETAIL),)


class QualityClassifier(ClassifierFilter):
    """Quality score (`quality.score`, the probability that a document reads like a manual page
    rather than a stub or boilerplate); drops documents under `min_score` with reason `low_quality`."""

    name = "quality_classifier"
    column = "quality.score"
    rules = (Rule("low_quality", column, "min", "min_score", detail=DETAIL),)
