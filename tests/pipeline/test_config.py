import pytest

from pipeline.config import ConfigError, load_job, parse_job
from stages.registry import build_source, build_stage, build_stages


def test_stage_forms_and_hash(tmp_path):
    a = parse_job({"inputs": [{"type": "jsonl", "paths": ["x"]}], "stages": ["exact_dedupe", {"basic_filter": {"min_chars": 5}}]})
    assert [s.name for s in a.stages] == ["exact_dedupe", "basic_filter"]
    assert a.stages[1].options == {"min_chars": 5}
    b = a.model_copy(update={"output": "elsewhere"})
    assert a.output_hash() == b.output_hash()
    c = parse_job({"inputs": [{"type": "jsonl", "paths": ["x"]}], "stages": ["exact_dedupe"]})
    assert a.output_hash() != c.output_hash()


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="inputs"):
        parse_job({"stages": []})
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        build_stage(parse_job({"inputs": [], "stages": ["nope"]}).stages[0], 0)
    with pytest.raises(ConfigError, match=r"^stages\[2\]: unknown stage 'exact_dedup'; did you mean exact_dedupe\?"):
        build_stages(parse_job({"inputs": [], "stages": ["redact", {"preset": {"name": "system"}}, "exact_dedup"]}).stages)
    with pytest.raises(ConfigError, match=r"no filter preset 'sytem'; did you mean system\?"):
        build_stages(parse_job({"inputs": [], "stages": [{"preset": {"name": "sytem"}}]}).stages)
    with pytest.raises(ConfigError, match="unknown option.*min_char\\b.*takes: min_chars"):
        build_stage(parse_job({"inputs": [], "stages": [{"basic_filter": {"min_char": 3}}]}).stages[0], 0)
    with pytest.raises(ConfigError, match="option min_chars"):
        build_stage(parse_job({"inputs": [], "stages": [{"basic_filter": {"min_chars": "many"}}]}).stages[0], 0)
    with pytest.raises(ConfigError, match="unknown type 'ftp'"):
        build_source(parse_job({"inputs": [{"type": "ftp"}]}).inputs[0], 0)
    with pytest.raises(ConfigError, match="missing option.*paths"):
        build_source(parse_job({"inputs": [{"type": "jsonl"}]}).inputs[0], 0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_job(tmp_path / "missing.yaml")
