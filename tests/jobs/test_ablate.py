"""`sigma ablate` on real Loghub logs: two identical variants, two seeds, a tiny model trained for
real on CPU and scored on a tiny build of the real eval suite. Same data and seed give the same
scores, and the paired interval of a variant against its copy holds 0; every arm trains on exactly
the budget's tokens, repeating a sample smaller than it; a re-run skips finished arms, retrains
only an arm whose run was lost, and re-scores (without training) an arm whose scores were lost,
with the same table; the bundle trains in a process where Ray cannot be imported; a train killed
after an arm's first checkpoint resumes to the same scores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.ablate import Ablation
from jobs.ablate_config import parse_ablate
from jobs.ablate_arms import train_config
from pipeline.config import ConfigError
from sigma.evals.paired import paired_differences

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


@pytest.mark.slow
def test_same_data_and_seed_give_the_same_scores(whole):
    out, summary = whole
    raw, copy = _arm(out, "raw-seed0"), _arm(out, "copy-seed0")
    assert raw["scores"]["bpb"] == copy["scores"]["bpb"] and raw["scores"]["mc"] == copy["scores"]["mc"]
    assert raw["scores"]["items"] == copy["scores"]["items"]
    assert raw["scores"]["bpb_all"] != _arm(out, "raw-seed1")["scores"]["bpb_all"]  # the seed does matter
    table, = summary["tables"]
    for key in ("bpb_all", "nl2cmd_bpb", "mc_margin"):
        m = table["variants"]["copy"]["metrics"][key]
        assert m["diff"] == 0 and m["ci95"] == [0.0, 0.0] and m["verdict"] == "within interval"
    assert table["suite"]["hash"] == raw["scores"]["suite"]["hash"]
    markdown = (out / "results.md").read_text()
    assert "mc_margin" in markdown and "+0.0000 [+0.0000, +0.0000]" in markdown and "paired bootstrap" in markdown


def test_the_interval_of_an_arm_against_itself_holds_zero_and_a_real_gap_does_not(whole):
    out, _ = whole
    seeds = [_arm(out, f"raw-seed{s}")["scores"] for s in (0, 1)]
    for key, d in paired_differences(seeds, seeds, draws=500).items():
        assert d["diff"] == 0 and d["ci95"][0] <= 0 <= d["ci95"][1], key
    worse = json.loads(json.dumps(seeds))
    for scores in worse:  # every document 10% costlier: a difference the interval must see
        for row in scores["items"]["documents"]:
            row[2] *= 1.1
    d = paired_differences(worse, seeds, draws=500)["bpb_all"]
    assert d["diff"] > 0 and d["ci95"][0] > 0


def test_every_arm_trains_on_exactly_the_budget(whole):
    out, summary = whole
    table, = summary["tables"]
    for arm in table["arms"]:
        assert arm["tokens"] == BUDGET and arm["steps"] == 24 and arm["weights"] == "ema"
        metrics = [json.loads(line) for line in (out / "arms" / arm["arm"] / "metrics.jsonl").read_text().splitlines()]
        assert metrics[-1]["tokens"] == BUDGET
        assert arm["epochs"] == pytest.approx(BUDGET / arm["sample_tokens"]) and arm["epochs"] > 1  # the sample repeats
        (group, read), = arm["trained_tokens_by_kind"].items()
        assert group.endswith(":log") and read == BUDGET  # every target token, counted by where it came from
        assert (out / "arms" / arm["arm"] / "ema" / "model.safetensors").exists()
    assert "raw" in (out / "results.md").read_text()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["arm"] for line in lines) == sorted(a["arm"] for a in table["arms"])
    report = (out / "report.html").read_text()
    assert report.count("<figure data-plot") == 2 and report.count("<svg") == 2


def _hidden_ray_env(tmp_path: Path) -> dict:
    """An environment whose Python cannot import Ray, as on a GPU machine without it."""
    site = tmp_path / "no-ray"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None  # `import ray` raises ImportError\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_bundle_trains_without_ray_and_a_killed_train_resumes(whole, tmp_path):
    out, _ = whole
    bundle, fresh = out / "bundle", tmp_path / "gpu-box"
    env = _hidden_ray_env(tmp_path)
    # killed (SIGKILL) right after the arm's first checkpoint, then run again with the same command
    kill_after_first_checkpoint = (
        "import os, signal, sys\nimport sigma.train as t\nsave = t.save_checkpoint\n"
        "def save_then_die(*a, **k):\n    save(*a, **k)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        "t.save_checkpoint = save_then_die\nfrom jobs.sigma_command import main\nsys.exit(main(sys.argv[1:]))\n")
    command = ["ablate", "train", str(bundle), "--out", str(fresh), "--only", "copy-seed1", "--results",
               str(tmp_path / "gpu.jsonl")]
    killed = subprocess.run([sys.executable, "-c", kill_after_first_checkpoint, *command], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -9
    assert (fresh / "arms" / "copy-seed1" / "checkpoints" / "latest").exists()
    assert not (fresh / "arms" / "copy-seed1" / "scores.json").exists()
    done = subprocess.run([sys.executable, "-c", "import sys\nfrom jobs.sigma_command import main\n"
                           "assert 'ray' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
                           "sys.exit(main(sys.argv[1:]))", *command], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed, whole_run = _arm(fresh, "copy-seed1"), _arm(out, "copy-seed1")
    assert resumed["scores"]["items"] == whole_run["scores"]["items"]  # the same steps, the same weights
    (line,) = (tmp_path / "gpu.jsonl").read_text().splitlines()
    assert json.loads(line)["arm"] == "copy-seed1"


def test_smoke_runs_every_arm_on_a_few_steps(whole, tmp_path):
    out, _ = whole
    from jobs.sigma_command import main

    assert main(["ablate", "train", str(out / "bundle"), "--out", str(tmp_path), "--smoke", "--no-ray", "-q"]) == 0
    results = [json.loads(line) for line in (tmp_path / "smoke-results.jsonl").read_text().splitlines()]
    assert len(results) == 4 and all(r["smoke"] and r["steps"] == 3 for r in results)
    assert "SMOKE" in (tmp_path / "smoke-results.md").read_text()
    assert main(["ablate", "train", str(out / "bundle"), "--out", str(tmp_path), "--only", "nothing*"]) == 2


def test_rerun_skips_finished_arms(whole, ablation):
    out, _ = whole
    table = (out / "results.md").read_text()
    lost_run, lost_scores = out / "arms" / "copy-seed1", out / "arms" / "raw-seed1" / "scores.json"
    (out / "results.jsonl").unlink()  # the arms' scores.json are the record too
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
        train_config(config.train.config, config.train.overrides, config.train.tokens, 0)
    config = parse_ablate(ablation)
    assert train_config(config.train.config, config.train.overrides, config.train.tokens, 1)["max_steps"] == 24


def test_a_file_alone_runs_every_phase():
    from jobs.ablate import with_phase

    assert with_phase(["ablate", "f.yaml", "-o", "x"]) == ["ablate", "run", "f.yaml", "-o", "x"]
    assert with_phase(["ablate", "train", "b"]) == ["ablate", "train", "b"]


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
    with pytest.raises(ConfigError, match="lr_scales"):
        parse_ablate({**ablation, "train": {**ablation["train"], "lr_scales": [1.0, 1.0]}})


@pytest.mark.slow
def test_a_variant_added_later_keeps_the_finished_arms(whole, ablation):
    out, _ = whole
    kept = {p.parent.name: p.stat().st_mtime_ns for p in (out / "arms").glob("*/scores.json")}
    more = {**ablation, "variants": {**ablation["variants"], "more": [{"exact_dedupe": {}}]}}
    summary = Ablation(parse_ablate(more), out, progress=False).run()
    assert {a: (out / "arms" / a / "scores.json").stat().st_mtime_ns for a in kept} == kept
    assert list(summary["tables"][0]["variants"]) == ["raw", "copy", "more"]
    assert (out / "variants" / "more" / "manifest.json").exists()


@pytest.mark.slow
def test_an_arm_trains_in_ray_train_workers(ablation, tmp_path, ray_local):
    """`train.ray: {workers: 2}`: the arm is a Ray Train run of two DDP workers; it still trains
    on exactly the budget (half the steps of one process) and counts what every rank read."""
    from jobs.ablate_train import ArmRunner

    config = parse_ablate({**ablation, "variants": {"raw": [], "copy": []}, "train": {**ablation["train"], "ray": {"workers": 2}}})
    bundle = Ablation(config, tmp_path / "ablate", progress=False).prepare()
    (result,) = ArmRunner(bundle, only=["raw-seed0"], progress=lambda message: None).run()
    assert result["tokens"] == BUDGET and result["steps"] == 12
    assert sum(result["trained_tokens_by_kind"].values()) == BUDGET
    from sigma.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "ablate" / "arms" / "raw-seed0").state["world_size"] == 2
    with pytest.raises(ConfigError, match="train.device and train.ray"):
        parse_ablate({**ablation, "train": {**ablation["train"], "ray": {"workers": 2}, "device": "cpu"}})
