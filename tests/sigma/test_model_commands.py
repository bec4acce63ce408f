import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sigma.model_commands import main, register

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_register_adds_the_model_commands():
    parser = argparse.ArgumentParser(prog="sigma")
    register(parser.add_subparsers(dest="command"))
    for argv in (["model", "info", "sigma-tiny"], ["tokenizer", "train", "--data", "d", "--vocab-size", "9"],
                 ["train", "sigma-tiny", "--data", "d", "--out", "o"], ["export", "ckpt", "--out", "o"],
                 ["convert", "smollm2", "--k-heads", "1"], ["train", "cfg.yaml", "--init", "c", "--data", "d", "--out", "o"]):
        assert callable(parser.parse_args(argv).func)


@pytest.mark.parametrize("command", [["model", "info"], ["tokenizer", "train"], ["train"], ["export"], ["convert"]])
def test_help_explains_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "example" in capsys.readouterr().out


def test_model_info(capsys):
    assert main(["model", "info", "sigma-1.5b"]) == 0
    out = capsys.readouterr().out
    assert "32 / 4 / 16" in out and "sigma-1.5b-gqa" in out and "1,280" in out and "2,048" in out


def test_a_wrong_name_or_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["model", "info", "sigma-tinny"]) == 2
    assert capsys.readouterr().err.startswith("sigma model info: error: 'sigma-tinny' is neither a YAML file")
    assert main(["train", "no-such.yaml", "--data", str(tmp_path), "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "sigma train: error: train config not found: no-such.yaml\n"
    assert main(["train", "sigma-tiny", "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sigma train: error: no shards in") and err.count("\n") == 1


def test_a_tokenizer_larger_than_the_model_is_one_line_that_says_what_to_do(tmp_path, capsys):
    from sigma.tokenizer import load_tokenizer, train_on_shards
    from .conftest import write_small_corpus

    folder = write_small_corpus(tmp_path / "small", ["a", "b", "c"])
    tokenizer = train_on_shards([folder], 1000, tmp_path / "tok")
    assert load_tokenizer(tokenizer).get_vocab_size() > 512  # sigma-tiny's vocabulary
    assert main(["train", "sigma-tiny", "--data", str(folder), "--tokenizer", str(tokenizer),
                 "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than the model's vocab_size 512: train the tokenizer with --vocab-size 512" in err


@pytest.mark.slow
def test_train_then_export_from_the_command_line(curated_man, curated_logs, tokenizer_file, tmp_path, subprocess_env,
                                                capsys):
    run, export = tmp_path / "run", tmp_path / "hf"
    common = [sys.executable, "-m", "sigma.model_commands"]
    subprocess.run(
        [*common, "train", str(PROJECT_ROOT / "configs/train/sigma-tiny.yaml"), "--data", str(curated_man), str(curated_logs),
         "--weights", "1", "2", "--out", str(run), "--tokenizer", str(tokenizer_file), "--steps", "4", "--seq-len", "64",
         "--eval-every", "2", "--log-every", "2", "--no-progress"],
        check=True, cwd=PROJECT_ROOT, env=subprocess_env,
    )
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [2, 4]
    state = json.loads((run / "checkpoints" / "step_00000004" / "state.json").read_text())
    assert state["train_config"]["data_weights"] == [1.0, 2.0] and state["train_config"]["max_steps"] == 4
    done = subprocess.run([*common, "export", str(run), "--out", str(export)], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=subprocess_env)
    assert (export / "modeling_sigma.py").exists() and str(export) in done.stdout
    capsys.readouterr()
    assert main(["model", "info", str(run)]) == 0  # a run folder: its latest checkpoint's model
    out = capsys.readouterr().out
    assert "(step 4, " in out and "T=64" in out and "4 / 1 / 2" in out  # sigma-tiny's Q / K / V heads
    assert main(["model", "info", str(tmp_path)]) == 2 and "no checkpoint in" in capsys.readouterr().err


def test_sigma_imports_without_ray_or_the_pipeline(subprocess_env):
    code = (
        "import sys, sigma.model_commands, sigma.train, sigma.export, sigma.packing, sigma.shards, sigma.tokenizer;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'pipeline', 'stages', 'jobs')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT, env=subprocess_env)


def test_bench_smoke_runs_on_cpu(tmp_path, subprocess_env):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "bench/train.py", "--smoke", "--json", str(out)], check=True,
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=subprocess_env)
    assert done.stdout.rstrip().splitlines()[-1].startswith("└")  # the table comes last
    results = {r["preset"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"sigma-tiny", "sigma-tiny-gqa"}
    assert results["sigma-tiny"]["tokens_per_s"] > 0 and results["sigma-tiny"]["step_vs_gqa"] > 0
