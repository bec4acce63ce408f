"""The job file: YAML validated into typed objects, with a hash of what determines the output."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from configs import ConfigError, locate, read_yaml_mapping

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(Strict):
    """One input: `type` names a source (files, man, jsonl, parquet, ...); the rest are its options."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StageConfig(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class WriterConfig(Strict):
    shard_max_rows: int = Field(1_000_000, gt=0)
    shard_max_mb: float = Field(256, gt=0, description="in-memory Arrow size of a shard, about 3x its file")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    row_group_rows: int = Field(1024, gt=0, description="documents per Parquet row group")
    rejects: Literal["all", "sample", "none"] = "all"
    rejects_rate: float = Field(0.1, ge=0, le=1)


class RayConfig(Strict):
    address: str | None = None  # None: an embedded local Ray; "auto" or "ray://host:10001": a cluster
    num_cpus: int | None = None  # for the embedded Ray


class JobConfig(Strict):
    name: str = "job"
    output: str | None = None
    inputs: list[InputConfig]
    stages: list[StageConfig] = Field(default_factory=list)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    unit_mb: float = Field(64, gt=0, description="input bytes per work unit, the grain of resume")
    max_stage_error_rate: float = Field(0.5, ge=0, le=1, description=(
        "a stage that raises for more than this share of a unit's documents fails the run"))
    keep_work: bool = False

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_forms(cls, value):
        """Stages are written as `- name` or `- name: {option: value}`."""
        out = []
        for item in value or []:
            if isinstance(item, str):
                out.append({"name": item})
            elif isinstance(item, dict) and len(item) == 1 and "name" not in item:
                (name, options), = item.items()
                out.append({"name": name, "options": options or {}})
            else:
                out.append(item)
        return out

    def output_hash(self) -> str:
        """Hash of everything that determines the output (not where it goes, which cluster, or
        when a run gives up: a finished run's output does not depend on that)."""
        body = self.model_dump(mode="json", exclude={"output", "ray", "keep_work", "max_stage_error_rate"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_job(path: str | Path | Traversable, overrides: dict[str, Any] | None = None) -> JobConfig:
    """A job file (a path, or one under configs/ read from the package; see `configs.locate`)."""
    data = read_yaml_mapping(path, "job file", "`inputs:` and `stages:`")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return parse_job(data, str(locate(path)))


def validate_config(model: type[BaseModel], data: dict, where: str, what: str):
    """``data`` as a ``model``, or a ConfigError that lists every wrong field (`where: invalid what`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{where}: invalid {what}"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def parse_job(data: dict, where: str = "job") -> JobConfig:
    return validate_config(JobConfig, data, where, "job")
