"""An ablation's configuration: YAML validated into typed objects (see configs/ablate/curation.yaml).

An ablation compares curation recipes the way DCLM and FineWeb do: the same sources curated by
each variant's stage list, one tokenizer trained on the union of the variants' outputs, and the
same model, token budget and seeds for every variant; each arm (variant x seed) is scored on the
frozen eval suite.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.config import InputConfig, RayConfig, StageConfig, WriterConfig, read_yaml_mapping, validate_config

from jobs.flywheel_config import Strict, TrainPlacement, _stage_list

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
DEFAULT_SUITE = "configs/eval/suite.yaml"


class TokenizerSettings(Strict):
    vocab_size: int = Field(1024, gt=256)
    # the variants whose outputs it trains on (default: all); naming them lets variants be added
    # to an ablation later without a new tokenizer, which would retrain every arm
    variants: list[str] | None = None


class OrderSettings(Strict):
    """The order an arm's sample is drawn in. A sample smaller than the variant must be a random
    sample of the variant's text, and the same draw for every variant: documents are cut into
    pieces of at most `piece_chars` (at a line end where there is one) and the pieces ordered by a
    hash of their document id and index (jobs/ablate_order.py)."""

    piece_chars: int = Field(4096, ge=256)


class BundleSettings(Strict):
    """What `prepare` writes for the arms to train on: each variant's first `tokens_per_variant`
    tokens in the fixed random order (the same number for every variant, so every arm repeats its
    sample the same number of times), as token ids in a pool that variants share. `max_mib`: the
    bundle's size that `prepare` refuses to exceed (so it can be copied in one go)."""

    tokens_per_variant: int | None = Field(None, gt=0)  # None: every variant whole
    max_mib: float | None = Field(None, gt=0)


class TrainSettings(TrainPlacement):
    """Every arm trains this config on exactly `tokens` tokens: `tokens` must be a whole number of
    steps (batch_size x seq_len x grad_accum), so no arm gets a token more than another.
    `lr_scales`: the arms are trained at each of these multiples of the config's learning rate
    (rankings of recipes can flip with the learning rate, arXiv 2512.24503); arms at a scale other
    than 1 are named `VARIANT-lrSCALE-seedK`."""

    config: str = "sigma-tiny"  # a train YAML (configs/train/...) or a model preset
    overrides: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields; not max_steps or seed
    tokens: int = Field(gt=0)
    lr_scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    # device, or ray (TrainPlacement): with `ray`, each arm trains in N Ray Train workers (DDP), the
    # arms one after another; `tokens` stays the arm's whole budget, so steps shrink by the worker count

    @field_validator("lr_scales")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value) or len(set(value)) != len(value):
            raise ValueError(f"lr_scales must be distinct and positive: {value}")
        return value

    @field_validator("overrides")
    @classmethod
    def _not_derived(cls, value: dict[str, Any]) -> dict[str, Any]:
        derived = sorted({"max_steps", "seed"} & set(value))
        if derived:
            raise ValueError(f"{', '.join(derived)} come from `tokens` and `seeds`, not from overrides")
        return value


class ArmSettings(Strict):
    """How arms run: each is a Ray task holding `num_cpus` (its torch threads), `concurrency` at once."""

    concurrency: int = Field(1, ge=1)
    num_cpus: int = Field(2, ge=1)


class ScoreSettings(Strict):
    """How arms are scored: on the moving average of their weights (`ema_decay` > 0, the default;
    the last steps' noise averaged away) or on the last step's; `bootstrap` resamples of suite
    documents and seeds for the paired intervals of the table."""

    limit: int | None = Field(None, gt=0)  # items per suite task, for a quick look; None: the whole suite
    ema_decay: float = Field(0.98, ge=0, lt=1)  # 0: score the last step's weights
    bootstrap: int = Field(2000, ge=100)


class AblateConfig(Strict):
    name: str = "ablate"
    output: str | None = None
    sources: list[InputConfig] = Field(min_length=1)
    suite: str = DEFAULT_SUITE  # scored on; and every variant's first stage excludes its text
    variants: dict[str, list[StageConfig]] = Field(min_length=2)
    baseline: str
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    train: TrainSettings
    seeds: list[int] = Field(min_length=2)  # the spread over seeds is what a difference is judged against
    arms: ArmSettings = Field(default_factory=ArmSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    order: OrderSettings = Field(default_factory=OrderSettings)
    bundle: BundleSettings = Field(default_factory=BundleSettings)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    unit_mb: float = Field(64, gt=0)
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("variants", mode="before")
    @classmethod
    def _variant_stages(cls, value):
        if not isinstance(value, dict):
            raise ValueError("variants: a mapping of name -> stage list (`raw: []`, `full: [redact, ...]`)")
        return {name: _stage_list(stages) for name, stages in value.items()}

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds repeat: {value}")
        return value

    @model_validator(mode="after")
    def _names(self) -> "AblateConfig":
        bad = [n for n in self.variants if not VARIANT_NAME.match(n)]
        if bad:
            raise ValueError(f"variant names {bad}: letters, digits and _ . + - only (they name folders)")
        if self.baseline not in self.variants:
            raise ValueError(f"baseline {self.baseline!r} is not a variant ({', '.join(self.variants)})")
        unknown = sorted(set(self.tokenizer.variants or []) - set(self.variants))
        if unknown:
            raise ValueError(f"tokenizer.variants {unknown} are not variants ({', '.join(self.variants)})")
        return self

    def tokenizer_variants(self) -> list[str]:
        return self.tokenizer.variants or list(self.variants)

    def exclusion(self) -> list[StageConfig]:
        """The suite exclusion, every variant's first stage: no arm trains on suite text."""
        return [StageConfig(name="decontaminate", options={"suite": self.suite})]

    def variant_stages(self, name: str) -> list[StageConfig]:
        return [*self.exclusion(), *self.variants[name]]

    def output_hash(self) -> str:
        """What the ingest, the tokenizer and a variant's stages are curated under. Not the
        variants themselves (each variant folder records its stages, so variants can be added),
        the training settings (each arm checks its own), the seeds (more seeds add arms), the
        baseline, scoring, where it runs or goes."""
        body = self.model_dump(mode="json", include={"sources", "suite", "writer", "unit_mb"})
        tokenizer = self.tokenizer_variants()
        body["tokenizer"] = {"vocab_size": self.tokenizer.vocab_size,
                             "variants": {n: [s.model_dump(mode="json") for s in self.variants[n]] for n in tokenizer}}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def parse_ablate(data: dict, where: str = "ablation") -> AblateConfig:
    return validate_config(AblateConfig, data, where, "ablation")


def load_ablate(path: str | Path) -> AblateConfig:
    path = Path(path)
    return parse_ablate(read_yaml_mapping(path, "ablation file", "`sources:`, `variants:` and `train:`"), str(path))
