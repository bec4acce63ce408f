"""The loop's configuration: YAML validated into typed objects (see configs/loop/demo.yaml)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import (ConfigError, InputConfig, JobConfig, RayConfig, StageConfig, WriterConfig,
                             read_yaml_mapping)
from sigma.ray_train import RayWorkers


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stage_list(value) -> list[StageConfig]:
    """Stages written as in a job file: `- name` or `- name: {option: value}`."""
    return JobConfig.model_validate({"inputs": [], "stages": value or []}).stages


class CurateSettings(Strict):
    """The stages every round's curate runs, on new sources and the last round's synthetic rows alike."""

    stages: list[StageConfig] = Field(default_factory=lambda: [StageConfig(name="basic_filter"),
                                                               StageConfig(name="exact_dedupe")])
    writer: WriterConfig = Field(default_factory=WriterConfig)
    unit_mb: float = Field(64, gt=0)
    against_corpus: bool = True  # give every stage that takes `existing` the earlier rounds' outputs

    _stage_forms = field_validator("stages", mode="before")(_stage_list)


class TokenizerSettings(Strict):
    vocab_size: int = Field(512, gt=256)
    path: str | None = None  # a tokenizer.json to use instead of training one on round 1 (or train.init_from's)


class TrainPlacement(Strict):
    """Where training runs: on `device` in this process, or in Ray Train workers (`ray: {workers: N,
    gpus_per_worker: G}`) on the job's Ray; not both."""

    device: str | None = None
    ray: RayWorkers | None = None

    @model_validator(mode="after")
    def _one_place(self) -> "TrainPlacement":
        if self.ray and self.device:
            raise ValueError("train.device and train.ray both place training: Ray gives each worker its device "
                             "(train.ray.gpus_per_worker), so drop train.device")
        return self


class TrainSettings(TrainPlacement):
    config: str = "sigma-tiny"  # a train YAML (configs/train/...) or a model preset
    steps: int = Field(200, gt=0)  # per round
    data: Literal["all", "round"] = "all"  # every round's curated output so far, or this round's
    overrides: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields
    # round 1 starts from this checkpoint (a run folder, a step_* folder or a `sigma convert` output)
    # instead of random weights; every round then trains its model and uses its tokenizer, and
    # `config` gives only the training settings
    init_from: str | None = None


class NL2CmdSettings(Strict):
    data: str
    shots: int = 2
    limit: int | None = 50
    seed: int = 0
    max_new_tokens: int = 48


class PerplexitySettings(Strict):
    max_documents: int | None = 32  # per kind
    max_chars: int | None = 2000


class SuiteSettings(Strict):
    """The frozen eval suite every round is scored on; its hash is pinned at round 1."""

    definition: str = "configs/eval/suite.yaml"
    build_dir: str | None = None  # default: the definition's
    limit: int | None = None  # documents per kind and multiple-choice items (None: all)


class EvalSettings(Strict):
    suite: SuiteSettings | None = None
    perplexity: PerplexitySettings | None = Field(default_factory=PerplexitySettings)  # on the round's own data
    nl2cmd: NL2CmdSettings | None = None


class SynthSettings(Strict):
    """`engine: round` synthesizes with the checkpoint the round just trained; a backend spec
    (`{backend: transformers, model: smollm2}`) with a fixed model instead."""

    engine: Literal["round"] | dict[str, Any] = "round"
    tasks: list[str] = Field(default_factory=lambda: ["explain_log", "annotate_config", "man_qa", "man_nl2cmd",
                                                      "rewrite_doc"])
    per_task: int | None = 16
    unit_requests: int = 8
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 0.95
    seed: int = 0
    max_new_tokens: int | None = None
    max_attempts: int = Field(3, ge=1)  # samples a request while its answer fails a check (a new seed each)
    batch_size: int = 8
    prompt_dir: str | None = None
    stages: list[StageConfig] = Field(default_factory=list)  # after `synthesize` in the synth job
    writer: WriterConfig = Field(default_factory=lambda: WriterConfig(rejects="all"))

    _stage_forms = field_validator("stages", mode="before")(_stage_list)


class FlywheelConfig(Strict):
    name: str = "loop"
    output: str | None = None
    rounds: int = Field(2, ge=1)
    sources: list[list[InputConfig]] = Field(min_length=1)  # new inputs per round; later rounds: none
    curate: CurateSettings = Field(default_factory=CurateSettings)
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    synth: SynthSettings = Field(default_factory=SynthSettings)
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _one_tokenizer(self) -> "FlywheelConfig":
        if self.train.init_from and self.tokenizer.path:
            raise ValueError("tokenizer.path and train.init_from both name a tokenizer: a model trains with the "
                             "tokenizer it was made with, so drop tokenizer.path")
        return self

    def round_inputs(self, round_: int) -> list[InputConfig]:
        return list(self.sources[round_ - 1]) if round_ <= len(self.sources) else []

    def output_hash(self) -> str:
        """What determines every round's outputs; not `rounds` (a finished loop can be extended),
        where it goes, or which Ray it runs on."""
        body = self.model_dump(mode="json", exclude={"output", "ray", "rounds"})
        if self.train.ray is None:  # training in-process: the hash of a loop made before `train.ray` existed
            del body["train"]["ray"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def parse_flywheel(data: dict, where: str = "loop") -> FlywheelConfig:
    try:
        return FlywheelConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{where}: invalid loop configuration"]
        for err in exc.errors():
            lines.append(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def load_flywheel(path: str | Path) -> FlywheelConfig:
    path = Path(path)
    return parse_flywheel(read_yaml_mapping(path, "loop file", "`sources:`"), str(path))
