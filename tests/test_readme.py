"""The README names only stages, sources and options that exist, and names all of them."""

import re
from pathlib import Path

import pytest
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



def _commands(first: str, *starts: str) -> list[list[str]]:
    """The command lines of the README's fenced block from the line that begins with `first` on,
    those that begin with one of `starts`, in order; comments and optional `[...]` arguments left out."""
    import shlex

    block = README[README.index("\n" + first) + 1:].split("```", 1)[0]
    lines = [re.sub(r"\[[^]]*\]", "", line.split(" # ")[0]).strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(starts)]


@pytest.mark.slow
def test_the_model_commands_run_in_sequence_as_written(tmp_path, monkeypatch, capsys, ray_local):
    """A newcomer's sequence, from the README as written: model info -> tokenizer -> train -> generate
    -> export -> eval suite, on a small job's output in the place of the default job's out/run1
    (`sigma curate --input` on this project's docs, one JSON line a section)."""
    import json

    from jobs.sigma_command import main

    model = _commands("sigma model info sigma-1.5b", "sigma ")
    scores = _commands("sigma eval suite --model runs/", "sigma eval suite --model runs/", "sigma eval perplexity")
    assert [c[0] for c in model] == ["model", "tokenizer", "train", "model", "generate", "export"] and len(scores) == 2
    monkeypatch.chdir(tmp_path)
    docs = Path(__file__).resolve().parents[1] / "docs"
    sections = [part for f in sorted(docs.glob("*.md")) for part in f.read_text().split("\n## ") if len(part) > 500]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t, "kind": "doc"}) + "\n" for t in sections))
    assert main(["curate", "--input", "docs.jsonl", "--output", "out/run1"]) == 0
    for argv in model + scores:
        if argv[0] == "train":
            argv = [*argv, "--steps", "20", "--no-progress"]  # the README's config trains 300 steps
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "bits/byte: all" in out and "(step 20, " in out and (tmp_path / "hf" / "tiny" / "config.json").exists()
