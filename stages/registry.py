"""Names used in job files, mapped to source and stage classes; options checked against each
class's constructor, so a typo in a job file is a clear error, not a silent default."""

from __future__ import annotations

import inspect
import typing

from pydantic import TypeAdapter, ValidationError

from configs import known_list
from pipeline.config import ConfigError, InputConfig, StageConfig
from pipeline.source import Source
from pipeline.stage import GlobalStage, Stage
from stages.dedupe.exact import ExactDedupe
from stages.dedupe.near import NearDedupe
from stages.dedupe.semantic import SemanticDedupe
from stages.ingest.configs import ConfigParse
from stages.ingest.crawl import CrawlSource
from stages.ingest.curate_output import CurateOutputSource
from stages.ingest.files import FilesSource
from stages.ingest.git import GitSource
from stages.ingest.jsonl import JsonlSource
from stages.ingest.logs import LogSource
from stages.ingest.man import ManSource
from stages.ingest.parquet import ParquetSource
from stages.ingest.warc import WarcSource
from stages.presets import expand_presets
from stages.quality.basic import BasicFilter
from stages.quality.c4 import C4Filter
from stages.quality.classifier_filter import DomainClassifier, QualityClassifier
from stages.quality.composite import CompositeScore
from stages.quality.fineweb import FineWebFilter
from stages.quality.gopher import GopherQuality, GopherRepetition
from stages.quality.langid import LanguageFilter
from stages.quality.system_checks import SystemChecks
from stages.rewrite.requests import SynthRequests
from stages.rewrite.select import SyntheticFilter
from stages.rewrite.synthesize import Synthesize
from stages.safety.decontaminate import Decontaminate
from stages.safety.redact import Redact

SOURCES: dict[str, type[Source]] = {c.kind: c for c in (FilesSource, ManSource, JsonlSource, ParquetSource,
                                                        WarcSource, CrawlSource, LogSource, GitSource,
                                                        SynthRequests, CurateOutputSource)}
STAGES: dict[str, type] = {c.name: c for c in (
    Redact, Decontaminate, BasicFilter, ExactDedupe, NearDedupe, ConfigParse, SystemChecks, LanguageFilter,
    GopherQuality, GopherRepetition, C4Filter, FineWebFilter, DomainClassifier, QualityClassifier, CompositeScore,
    Synthesize, SemanticDedupe, SyntheticFilter,
)}


def construct(cls: type, options: dict, where: str, fixed: dict | None = None):
    fixed = fixed or {}
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self" and n not in fixed}
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                          f"{cls.__name__} takes: {', '.join(params) or 'no options'}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in options]
    if missing:
        raise ConfigError(f"{where}: missing option(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls.__init__)
    kwargs = dict(fixed)
    for name, value in options.items():
        try:
            kwargs[name] = TypeAdapter(hints[name]).validate_python(value) if name in hints else value
        except ValidationError as exc:
            raise ConfigError(f"{where}: option {name}: {exc.errors()[0]['msg']} (got {value!r})") from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def build_source(config: InputConfig, index: int) -> Source:
    if config.type not in SOURCES:
        raise ConfigError(f"inputs[{index}]: unknown type {config.type!r}; {known_list(config.type, sorted(SOURCES))}")
    name = config.name or f"{config.type}-{index}"
    return construct(SOURCES[config.type], config.options(), f"inputs[{index}] ({config.type})", {"name": name})


def build_stages(configs: list[StageConfig]) -> list[Stage | GlobalStage]:
    """The job's stages, with filter presets (`- preset: {name: system}`) expanded in place. A name
    the file misspells is reported at its own entry, counted before any preset expands."""
    for index, config in enumerate(configs):
        if config.name != "preset":
            check_stage_name(config.name, index)
    return [build_stage(c, i) for i, c in enumerate(expand_presets(configs))]


def check_stage_name(name: str, index: int) -> None:
    if name not in STAGES:
        raise ConfigError(f"stages[{index}]: unknown stage {name!r}; {known_list(name, sorted(STAGES))}")


def build_stage(config: StageConfig, index: int) -> Stage | GlobalStage:
    check_stage_name(config.name, index)
    return construct(STAGES[config.name], config.options, f"stages[{index}] ({config.name})")
