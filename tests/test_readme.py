"""The README names only stages, sources and options that exist, and names all of them."""

import re
from pathlib import Path

import yaml

from pipeline.config import parse_job
from stages.registry import SOURCES, STAGES, build_source, build_stages

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _without_parentheses(text: str) -> str:
    """`text` with every parenthesised stretch (nested ones too) left out: the names it lists stand outside them."""
    kept, depth = [], 0
    for ch in text:
        depth += ch == "("
        if depth == 0:
            kept.append(ch)
        depth -= ch == ")" and depth > 0
    return "".join(kept)


def _names(text: str) -> set[str]:
    return set(re.findall(r"`([a-z0-9_]+)`", _without_parentheses(text)))


def test_the_stage_table_names_every_stage_and_no_other():
    table = README.split("Stages, by what they do")[1].split("\n\n")[1]
    rows = [line.split("|")[2].split("; presets")[0] for line in table.splitlines()[2:]]
    assert _names(" ".join(rows)) == set(STAGES)


def test_the_sources_paragraph_names_every_source_and_no_other():
    paragraph = README.split("\nSources: ")[1].split("\n\n")[0]
    assert _names(paragraph.split("`configs/system-sources.yaml`")[0]) == set(SOURCES)


def test_the_job_example_is_a_job_that_builds():
    block = re.search(r"```yaml\n(name: .*?)```", README, re.S).group(1)
    job = parse_job(yaml.safe_load(block), "README's job")
    assert [build_source(c, i).name for i, c in enumerate(job.inputs)]
    names = [stage.name for stage in build_stages(job.stages)]
    assert names[0] == "redact" and "language_filter" in names and names[-1] == "near_dedupe"
