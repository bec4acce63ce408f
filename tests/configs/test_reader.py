"""The one YAML reader says which file is wrong and where; names and `configs/` paths resolve from
the package from any working folder; a path that exists is read as given."""

from __future__ import annotations

from pathlib import Path

import pytest

import configs
from configs import ConfigError, find, locate, named, read_yaml_mapping
from jobs.ablate_config import load_ablate
from jobs.curate import resolve_job_file
from jobs.flywheel_config import load_flywheel
from pipeline.config import load_job
from sigma.evals.suite import SuiteDefinition
from sigma.train import TrainConfig
from stages.presets import known_presets, load_preset
from stages.rewrite.templates import load_template


def test_errors_name_the_file_and_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninputs: [\n  - a: b\n")
    with pytest.raises(ConfigError, match=rf"{bad}, line 3, column 3: not valid YAML: while parsing a flow node: .*found '-'"):
        read_yaml_mapping(bad, "job file")
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("stages:\n\t- redact\n")
    with pytest.raises(ConfigError, match=rf"{tabs}, line 2, column 1: not valid YAML"):
        read_yaml_mapping(tabs)
    listed = tmp_path / "list.yaml"
    listed.write_text("- redact\n- basic_filter\n")
    with pytest.raises(ConfigError, match=rf"{listed}: a job file is a YAML mapping with `inputs:`, not a list"):
        read_yaml_mapping(listed, "job file", "`inputs:`")
    with pytest.raises(ConfigError, match="job file not found: .*missing.yaml"):
        read_yaml_mapping(tmp_path / "missing.yaml", "job file")
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml_mapping(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{latin}: not a UTF-8 text file"):
        read_yaml_mapping(latin)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert read_yaml_mapping(empty) == {}


def test_every_reader_goes_through_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [\n")
    for load in (load_job, TrainConfig.load, SuiteDefinition.load):
        with pytest.raises(ConfigError, match=rf"{bad}, line 2, column 1: not valid YAML"):
            load(bad)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "haiku.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="a prompt template is a YAML mapping"):
        load_template("haiku", prompts)


def test_names_resolve_from_the_package_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_job_file("local-system") == configs.shipped("local-system.yaml")
    assert resolve_job_file("adapt/man") == configs.shipped("adapt", "man.yaml")
    assert load_job(resolve_job_file("local-system")).name == "local-system"
    with pytest.raises(ConfigError, match="no job file 'nope'; known: local-system, system-sources"):
        resolve_job_file("nope")
    with pytest.raises(ConfigError, match="without `..`"):
        load_preset("../local-system")
    assert {"system", "web"} <= set(known_presets()) and load_preset("system")[0].name == "system_checks"
    assert load_template("man_qa").task == "man_qa"
    with pytest.raises(ConfigError, match="no prompt template for task 'haiku'; known: .*man_qa"):
        load_template("haiku")
    # a path under configs/ that is not there from here: the package's file (the defaults of loop,
    # ablate and eval name configs/eval/suite.yaml)
    assert locate("configs/eval/suite.yaml") == configs.shipped("eval", "suite.yaml")
    assert SuiteDefinition.load("configs/eval/suite.yaml").name == "system-v1"
    assert TrainConfig.load("configs/train/sigma-tiny.yaml").model == "sigma-tiny"
    assert load_flywheel("configs/loop/demo.yaml").train.config == "configs/train/sigma-tiny.yaml"
    assert load_ablate("configs/ablate/curation.yaml").variants


def test_a_path_that_exists_is_read_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    own = tmp_path / "configs" / "local-system.yaml"
    own.write_text("name: mine\ninputs: [{type: jsonl, paths: [x.jsonl]}]\n")
    assert locate("configs/local-system.yaml") == own.relative_to(tmp_path)
    assert load_job(resolve_job_file("configs/local-system.yaml")).name == "mine"
    (tmp_path / "local-system").write_text("name: a file without a suffix\ninputs: []\n")
    assert find("local-system", "", "job file") == Path("local-system")  # the file here, not the shipped job
    assert load_job(resolve_job_file("local-system")).name == "a file without a suffix"
    assert locate("configs/nope.yaml") == Path("configs/nope.yaml")  # missing: left for the reader to report
    with pytest.raises(ConfigError, match="job file not found: configs/nope.yaml"):
        load_job("configs/nope.yaml")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    with pytest.raises(ConfigError, match=rf"no prompt template for task 'man_qa' in {prompts}; known: none"):
        named("man_qa", "prompts", "prompt template for task", within=prompts)
