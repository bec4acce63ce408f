"""Real training steps of sigma-tiny on the CPU over curated man pages and logs."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sigma.checkpoint import find_checkpoint
from sigma.train import TrainConfig, train

TINY = TrainConfig(
    model="sigma-tiny", seq_len=128, batch_size=8, max_steps=150, lr=3e-3, warmup_steps=10,
    held_out_fraction=0.05, eval_every=50, eval_sequences=32, save_every=50, log_every=10,
)


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(curated_man, curated_logs, tokenizer_file, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TINY, [curated_man, curated_logs], run, tokenizer=tokenizer_file, progress=False)
    return run


def test_held_out_loss_falls(trained):
    evals = [m for m in _metrics(trained) if "eval_loss" in m]
    assert [m["step"] for m in evals] == [0, 50, 100, 150]
    assert evals[0]["eval_loss"] == pytest.approx(6.24, abs=0.1)  # ln(512): an untrained model
    losses = [m["eval_loss"] for m in evals]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.6 * losses[0]
    assert {"eval_loss/man", "eval_loss/logs", "eval_ppl"} <= set(evals[-1])


def test_training_metrics(trained):
    steps = [m for m in _metrics(trained) if "loss" in m]
    assert [m["step"] for m in steps] == list(range(10, 151, 10))
    assert steps[-1]["tokens"] == 150 * 8 * 128
    assert all(m["tokens_per_s"] > 0 and m["grad_norm"] > 0 for m in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]


def test_checkpoint_layout(trained):
    latest = find_checkpoint(trained)
    assert latest.name == "step_00000150"
    assert sorted(p.name for p in (trained / "checkpoints").glob("step_*")) == ["step_00000100", "step_00000150"]
    assert not list((trained / "checkpoints").glob(".*tmp*"))
    weights = load_file(latest / "model.safetensors")
    assert "layers.0.attention.q_gate.weight" in weights
    optimizer = torch.load(latest / "optimizer.pt", weights_only=True)
    assert optimizer["state"] and optimizer["param_groups"]
    assert torch.load(latest / "rng.pt", weights_only=True)["cpu"].dtype == torch.uint8
    state = json.loads((latest / "state.json").read_text())
    assert state["step"] == 150 and state["world_size"] == 1
    assert len(state["data"][0]["streams"]) == 2 and state["data"][0]["counts"] == [600, 600]
    assert (latest / "tokenizer.json").exists()


def test_refuses_to_overwrite_a_run(trained, curated_man, tokenizer_file):
    with pytest.raises(FileExistsError, match="--resume"):
        train(TINY, [curated_man], trained, tokenizer=tokenizer_file, progress=False)


def test_resume_equals_uninterrupted(curated_man, curated_logs, tokenizer_file, tmp_path):
    """Stopped at step 13 (a checkpoint at 10 and 13) and resumed, the run logs the same numbers."""
    config = TrainConfig(
        model="sigma-tiny", seq_len=64, batch_size=4, grad_accum=2, max_steps=24, lr=3e-3, warmup_steps=4,
        held_out_fraction=0.05, eval_every=8, eval_sequences=8, save_every=5, log_every=1,
        data_weights=(1.0, 2.0), schedule="wsd", decay_fraction=0.5,
    )
    data = [curated_man, curated_logs]
    train(config, data, tmp_path / "whole", tokenizer=tokenizer_file, progress=False)
    train(config, data, tmp_path / "split", tokenizer=tokenizer_file, progress=False, stop_at=13)
    interrupted = _metrics(tmp_path / "split")
    assert interrupted[-1]["step"] == 13
    # A crash after step 13's checkpoint would have left lines past it; resuming drops them.
    with (tmp_path / "split" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 14, "loss": 123.0}) + "\n")
    train(config, data, tmp_path / "split", tokenizer=tokenizer_file, progress=False, resume=True)

    whole, split = _metrics(tmp_path / "whole"), _metrics(tmp_path / "split")
    assert [m["step"] for m in whole] == [m["step"] for m in split]
    for a, b in zip(whole, split):
        for key in ("loss", "eval_loss", "grad_norm", "lr"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-6), (a["step"], key)
    final_whole = load_file(find_checkpoint(tmp_path / "whole") / "model.safetensors")
    final_split = load_file(find_checkpoint(tmp_path / "split") / "model.safetensors")
    for name, tensor in final_whole.items():
        torch.testing.assert_close(final_split[name], tensor, atol=1e-6, rtol=0)


def test_doc_mask_trains(curated_logs, tokenizer_file, tmp_path):
    config = TrainConfig(model="sigma-tiny", seq_len=64, batch_size=4, max_steps=3, held_out_fraction=0.05,
                         eval_sequences=4, eval_every=3, doc_mask=True, log_every=1)
    result = train(config, [curated_logs], tmp_path, tokenizer=tokenizer_file, progress=False)
    assert result["step"] == 3 and result["eval_loss"] == result["eval_loss"]


@pytest.mark.slow
def test_two_rank_gloo_run_resumes_exactly(curated_man, curated_logs, tokenizer_file, tmp_path, subprocess_env):
    """torchrun with 2 CPU ranks: the data is split by rank and every rank's position is saved."""
    from .conftest import torchrun_train

    def run(out, *extra):
        torchrun_train(
            ["sigma-tiny", "--data", str(curated_man), str(curated_logs), "--tokenizer", str(tokenizer_file),
             "--out", str(out), "--steps", "6", "--seq-len", "64", "--batch-size", "2", "--eval-every", "3",
             "--log-every", "1", "--save-every", "3", "--no-progress", *extra],
            out, subprocess_env,
        )

    run(tmp_path / "whole")
    run(tmp_path / "split", "--stop-at", "3")
    run(tmp_path / "split", "--resume")
    state = json.loads((find_checkpoint(tmp_path / "split") / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["data"]) == 2 and state["data"][0] != state["data"][1]
    whole, split = _metrics(tmp_path / "whole"), _metrics(tmp_path / "split")
    assert [m["step"] for m in whole] == [m["step"] for m in split]
    for a, b in zip(whole, split):
        for key in ("loss", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-6)


def test_resume_refuses_a_different_data_layout(trained, curated_man, curated_logs, tokenizer_file):
    with pytest.raises(ValueError, match="seq_len"):
        train(TINY.override(seq_len=64), [curated_man, curated_logs], trained, tokenizer=tokenizer_file, resume=True, progress=False)


def test_init_from_starts_a_new_run_from_the_weights(trained, curated_man, curated_logs, tmp_path):
    """Continued pretraining: the new run's step-0 evaluation is the old run's last one (same
    weights, tokenizer and held-out windows), then it counts its own steps with a fresh optimizer."""
    run = tmp_path / "next"
    train(TINY.override(max_steps=10, eval_every=10, save_every=10), [curated_man, curated_logs], run,
          init_from=trained, progress=False)
    old = [m for m in _metrics(trained) if "eval_loss" in m][-1]
    new = [m for m in _metrics(run) if "eval_loss" in m]
    assert new[0]["step"] == 0 and new[0]["eval_loss"] == pytest.approx(old["eval_loss"], abs=1e-5)
    state = json.loads((find_checkpoint(run) / "state.json").read_text())
    assert state["step"] == 10 and state["init_from"].endswith("step_00000150")
    assert (find_checkpoint(run) / "tokenizer.json").read_text() == (find_checkpoint(trained) / "tokenizer.json").read_text()
    with pytest.raises(ValueError, match="model differs"):
        train(TINY.override(model={"preset": "sigma-tiny", "n_layers": 1}), [curated_man], tmp_path / "other",
              init_from=trained, progress=False)


SMALL = TrainConfig(model="sigma-tiny", seq_len=32, batch_size=4, max_steps=8, lr=3e-3, warmup_steps=2,
                    held_out_fraction=0.0, lanes=8, eval_every=4, save_every=4, log_every=1)


def test_three_documents_and_eight_lanes_train_and_resume_exactly(tmp_path):
    """A corpus with one row group of three documents (fewer row groups than lanes) trains, and a
    run stopped at step 4 and resumed logs the losses of an uninterrupted one."""
    from .conftest import write_small_corpus

    data = [write_small_corpus(tmp_path / "small", ["a", "b", "c"])]
    train(SMALL, data, tmp_path / "whole", progress=False)
    train(SMALL, data, tmp_path / "split", progress=False, stop_at=4)
    train(SMALL, data, tmp_path / "split", progress=False, resume=True)
    whole, split = _metrics(tmp_path / "whole"), _metrics(tmp_path / "split")
    assert [m["step"] for m in whole if "loss" in m] == list(range(1, 9))
    assert [m["loss"] for m in split if "loss" in m] == pytest.approx([m["loss"] for m in whole if "loss" in m], abs=1e-6)


@pytest.mark.slow
def test_two_gloo_ranks_train_on_one_row_group(tmp_path, subprocess_env):
    """torchrun with 2 CPU ranks on a corpus of one row group: the ranks share its documents."""
    from .conftest import torchrun_train, write_small_corpus

    data = write_small_corpus(tmp_path / "small", ["a", "b", "c", "d"])
    torchrun_train(["sigma-tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "4", "--seq-len", "32", "--batch-size", "2",
                    "--log-every", "1", "--save-every", "4", "--eval-every", "4", "--no-progress"],
                   tmp_path / "run", subprocess_env)
    state = json.loads((find_checkpoint(tmp_path / "run") / "state.json").read_text())
    assert state["step"] == 4 and state["world_size"] == 2 and state["data"][0] != state["data"][1]


def test_a_corpus_of_held_out_documents_is_one_line_and_exit_2(tmp_path, capsys):
    from sigma.model_commands import main
    from sigma.packing import is_held_out

    from .conftest import write_small_corpus

    ids = [f"doc-{i}" for i in range(2000) if is_held_out(f"doc-{i}", 0.01)][:3]
    data = write_small_corpus(tmp_path / "curate", ids)
    code = main(["train", "sigma-tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2",
                 "--seq-len", "32", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"sigma train: error: {data} holds 3 document(s), all held out for evaluation "
                           "(held_out_fraction 0.01): no train documents to read")
