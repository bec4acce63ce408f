"""`sigma train --ray`: the training loop in Ray Train workers on the session's local Ray (two CPU
workers, gloo), killed after its first checkpoint and started again, logs the losses of
`torchrun --nproc-per-node 2` on the same config, uninterrupted, and ends with its weights."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sigma.checkpoint import find_checkpoint
from sigma.model_commands import main

from .conftest import torchrun_train, write_small_corpus

ROOT = Path(__file__).resolve().parents[2]
STEPS = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 documents in row groups of 2, so that each rank reads its own, and one tokenizer."""
    from sigma.tokenizer import train_on_shards

    base = tmp_path_factory.mktemp("ray_train")
    data = write_small_corpus(base / "data", [f"doc-{i}" for i in range(24)], row_group_rows=2)
    return data, train_on_shards([data], vocab_size=512, out_dir=base)


def _args(corpus, out: Path) -> list[str]:
    data, tokenizer = corpus
    return ["train", "sigma-tiny", "--data", str(data), "--tokenizer", str(tokenizer), "--out", str(out),
            "--steps", str(STEPS), "--seq-len", "32", "--batch-size", "2", "--lr", "0.003", "--warmup-steps", "2",
            "--eval-every", "12", "--save-every", "4", "--log-every", "1", "--no-progress"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory, subprocess_env) -> Path:
    """The same config under `torchrun --nproc-per-node 2`, start to end."""
    out = tmp_path_factory.mktemp("torchrun") / "run"
    torchrun_train(_args(corpus, out)[1:], out, subprocess_env)
    return out


@pytest.fixture(scope="module")
def killed_and_resumed(corpus, ray_local, tmp_path_factory, subprocess_env) -> Path:
    """`sigma train --ray` on this session's Ray, its driver killed (SIGKILL) once the first
    checkpoint is written, then the same command with --resume, its driver in this process."""
    out = tmp_path_factory.mktemp("on_ray") / "run"
    address = ray_local.get_runtime_context().gcs_address
    driver = subprocess.Popen([sys.executable, "-m", "sigma.model_commands", *_args(corpus, out), "--ray",
                               "--workers", "2", "--address", address], cwd=ROOT, env=subprocess_env,
                              stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while find_checkpoint(out) is None:
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint in 600 s"
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert json.loads((find_checkpoint(out) / "state.json").read_text())["step"] < STEPS
    assert main([*_args(corpus, out), "--ray", "--workers", "2", "--resume"]) == 0
    return out


@pytest.mark.slow
def test_ray_train_logs_the_losses_of_torchrun(killed_and_resumed, uninterrupted):
    on_ray, under_torchrun = _metrics(killed_and_resumed), _metrics(uninterrupted)
    assert [m["step"] for m in on_ray] == [m["step"] for m in under_torchrun]
    assert sum("loss" in m for m in on_ray) == STEPS
    for a, b in zip(on_ray, under_torchrun):
        for key in ("loss", "eval_loss"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), (b["step"], key)
    state = json.loads((find_checkpoint(killed_and_resumed) / "state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2
    assert state["data"][0] != state["data"][1]  # each rank read its own documents


def test_a_killed_run_started_again_ends_with_the_uninterrupted_weights(killed_and_resumed, uninterrupted):
    want = load_file(find_checkpoint(uninterrupted) / "model.safetensors")
    got = load_file(find_checkpoint(killed_and_resumed) / "model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_what_the_cluster_cannot_run_is_one_line_and_exit_2(corpus, ray_local, tmp_path, capsys):
    """The session's Ray has 2 CPUs and no autoscaler: three workers do not fit, said before any starts."""
    assert main([*_args(corpus, tmp_path / "run"), "--ray", "--workers", "3"]) == 2
    assert capsys.readouterr().err.strip() == ("sigma train: error: 3 workers x 1 CPU need 3 CPUs; the Ray cluster "
                                               "has 2: ask for fewer workers, or add nodes")
    for extra, message in ((["--workers", "2"], "--workers only applies with --ray"),
                           (["--ray", "--device", "cpu"], "--device does not go with --ray"),
                           (["--ray", "--workers", "0"], "workers must be at least 1")):
        assert main([*_args(corpus, tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_sigma_imports_and_says_what_is_missing_without_ray(corpus, tmp_path, subprocess_env):
    code = ("import sys; sys.modules['ray'] = None; from sigma.model_commands import main; "
            f"sys.exit(main({[*_args(corpus, tmp_path / 'run'), '--ray']!r}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=subprocess_env)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("sigma train: error: training on Ray needs Ray Train") and "pip install" in run.stderr
