"""`sigma ablate` on real Loghub logs: two identical variants, two seeds, a tiny model trained for
real on CPU and scored on a tiny build of the real eval suite. Same data and seed give the same
scores; every arm trains on exactly the budget's tokens, repeating a corpus smaller than it; a
re-run skips finished arms, retrains only an arm whose run was lost, and re-scores (without
training) an arm whose scores were lost, with the same table."""

import json
from pathlib import Path

import pytest
import yaml

from jobs.ablate import Ablation, train_config
from jobs.ablate_config import parse_ablate
from pipeline.config import ConfigError

BUDGET = 24 * 4 * 64  # steps x batch x seq_len


def _docs(loghub: Path) -> list[dict]:
    docs = []
    for system in ("OpenSSH", "Linux", "Apache"):
        lines = (loghub / system / f"{system}_2k.log").read_text().splitlines()
        docs += [{"id": f"{system}-{i}", "text": "\n".join(lines[i * 6:(i + 1) * 6]), "kind": "log"} for i in range(3)]
    return docs


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, loghub, nl2bash) -> dict:
    base = tmp_path_factory.mktemp("ablate")
    (base / "logs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _docs(loghub)))
    suite = {"name": "tiny", "build_dir": str(base / "suite"),
             "loghub": {"root": str(loghub), "systems": ["HDFS"], "documents": 1, "lines": 12},
             "nl2bash": {"path": str(nl2bash), "text_pairs": 3, "mc_items": 4}}
    (base / "suite.yaml").write_text(yaml.safe_dump(suite))
    return {
        "name": "test", "sources": [{"type": "jsonl", "name": "logs", "paths": [str(base / "logs.jsonl")]}],
        "suite": str(base / "suite.yaml"),
        "variants": {"raw": [], "copy": []},
        "baseline": "raw",
        "tokenizer": {"vocab_size": 300, "variants": ["raw", "copy"]},
        "train": {"config": "sigma-tiny", "tokens": BUDGET,
                  "overrides": {"seq_len": 64, "batch_size": 4, "warmup_steps": 2, "save_every": 10, "log_every": 4}},
        "seeds": [0, 1],
        "arms": {"concurrency": 2, "num_cpus": 1},
        "writer": {"row_group_rows": 4},
        "ray": {"num_cpus": 2},
    }


@pytest.fixture(scope="module")
def whole(ablation, tmp_path_factory, ray_local) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "ablate"
    return out, Ablation(parse_ablate(ablation), out, progress=False).run()


def _arm(out: Path, arm: str) -> dict:
    return json.loads((out / "arms" / arm / "scores.json").read_text())


def test_same_data_and_seed_give_the_same_scores(whole):
    out, summary = whole
    raw, copy = _arm(out, "raw-seed0"), _arm(out, "copy-seed0")
    assert raw["scores"]["bpb"] == copy["scores"]["bpb"] and raw["scores"]["mc"] == copy["scores"]["mc"]
    assert raw["scores"]["bpb_all"] != _arm(out, "raw-seed1")["scores"]["bpb_all"]  # the seed does matter
    m = summary["variants"]["copy"]["metrics"]["bpb_all"]
    assert m["diff"] == 0 and m["verdict"] == "within spread"
    assert summary["suite"]["hash"] == raw["scores"]["suite"]["hash"]


def test_every_arm_trains_on_exactly_the_budget(whole):
    out, summary = whole
    for arm in summary["arms"]:
        assert arm["tokens"] == BUDGET and arm["steps"] == 24
        metrics = [json.loads(line) for line in (out / "arms" / arm["arm"] / "metrics.jsonl").read_text().splitlines()]
        assert metrics[-1]["tokens"] == BUDGET
        assert arm["epochs"] == pytest.approx(BUDGET / arm["corpus_tokens"]) and arm["epochs"] > 1  # the corpus repeats
        (group, read), = arm["trained_bytes_by_kind"].items()
        assert group.endswith(":log") and read > BUDGET
        assert arm["data"] == str(out / "ordered" / arm["variant"])
    assert "raw" in (out / "results.md").read_text()
    report = (out / "report.html").read_text()
    assert report.count("<figure data-plot") == 2 and report.count("<svg") == 2


def test_rerun_skips_finished_arms(whole, ablation):
    out, _ = whole
    table = (out / "results.md").read_text()
    lost_run, lost_scores = out / "arms" / "copy-seed1", out / "arms" / "raw-seed1" / "scores.json"
    kept = {arm: (out / "arms" / arm / "scores.json").stat().st_mtime_ns for arm in ("raw-seed0", "copy-seed0")}
    checkpoint = out / "arms" / "raw-seed1" / "checkpoints"
    trained = {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()}
    for path in sorted(lost_run.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    lost_scores.unlink()

    Ablation(parse_ablate(ablation), out, progress=False).run()
    assert {arm: (out / "arms" / arm / "scores.json").stat().st_mtime_ns for arm in kept} == kept
    assert _arm(out, "copy-seed1")["seconds"]["train"] is not None  # trained again
    assert _arm(out, "raw-seed1")["seconds"]["train"] is None  # only scored again
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == trained
    assert (out / "results.md").read_text() == table


def test_budget_is_a_whole_number_of_steps(ablation):
    config = parse_ablate({**ablation, "train": {**ablation["train"], "tokens": BUDGET + 1}})
    with pytest.raises(ConfigError, match="whole number of steps"):
        train_config(config, 0)
    assert train_config(parse_ablate(ablation), 1).max_steps == 24


def test_config_errors(ablation):
    with pytest.raises(ConfigError, match="baseline 'full' is not a variant"):
        parse_ablate({**ablation, "baseline": "full"})
    with pytest.raises(ConfigError, match="seeds"):
        parse_ablate({**ablation, "seeds": [0]})
    with pytest.raises(ConfigError, match="max_steps"):
        parse_ablate({**ablation, "train": {**ablation["train"], "overrides": {"max_steps": 5}}})


def test_arms_trained_with_other_settings_are_refused(whole, ablation):
    out, _ = whole
    longer = {**ablation, "train": {**ablation["train"], "tokens": BUDGET * 2}}
    with pytest.raises(ConfigError, match="other training settings"):
        Ablation(parse_ablate(longer), out, progress=False).run()


def test_a_variant_added_later_keeps_the_finished_arms(whole, ablation):
    out, _ = whole
    kept = {p.parent.name: p.stat().st_mtime_ns for p in (out / "arms").glob("*/scores.json")}
    more = {**ablation, "variants": {**ablation["variants"], "more": [{"exact_dedupe": {}}]}}
    summary = Ablation(parse_ablate(more), out, progress=False).run()
    assert {a: (out / "arms" / a / "scores.json").stat().st_mtime_ns for a in kept} == kept
    assert list(summary["variants"]) == ["raw", "copy", "more"] and (out / "variants" / "more" / "manifest.json").exists()
