"""The flywheel's train step in Ray Train workers (`train.ray`), on the session's local Ray."""

import json

import pytest

from jobs.flywheel import Flywheel
from jobs.flywheel_config import parse_flywheel
from pipeline.config import ConfigError
from sigma.checkpoint import read_checkpoint

from ..sigma.conftest import write_small_corpus

LOOP = {"sources": [[{"type": "jsonl", "paths": ["unused.jsonl"]}]], "tokenizer": {"vocab_size": 300},
        "train": {"steps": 4, "ray": {"workers": 2},
                  "overrides": {"seq_len": 32, "batch_size": 2, "warmup_steps": 1, "eval_every": 4, "save_every": 2,
                                "log_every": 1, "held_out_fraction": 0.0}}}


@pytest.mark.slow
def test_the_train_step_runs_on_ray_workers(ray_local, tmp_path):
    """Round 1's curated folder and tokenizer (made here) train on two workers, one rank each."""
    from sigma.tokenizer import train_on_shards

    loop = Flywheel(parse_flywheel(LOOP), tmp_path / "loop", progress=False)
    curated = write_small_corpus(loop.round_dir(1) / "curate", [f"doc-{i}" for i in range(8)], row_group_rows=2)
    loop.manifest_path(1).write_text(json.dumps({"steps": {"curate": {"totals": {"kept": 8}}}}))
    train_on_shards([curated], 300, loop.root)
    summary = loop.step_train(1)
    assert summary["steps"] == 4 and summary["tokens"] == 4 * 2 * 32 * 2 and summary["loss"] > 0
    checkpoint = read_checkpoint(loop.round_dir(1) / "train")
    assert checkpoint.step == 4 and checkpoint.state["world_size"] == 2


def test_train_ray_settings_are_checked():
    with pytest.raises(ConfigError, match="train.ray.wokers"):
        parse_flywheel({**LOOP, "train": {"ray": {"wokers": 2}}})
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        parse_flywheel({**LOOP, "train": {"ray": {"workers": 0}}})
    with pytest.raises(ConfigError, match="train.device and train.ray"):
        parse_flywheel({**LOOP, "train": {"ray": {"workers": 2}, "device": "cpu"}})
    in_process = parse_flywheel({**LOOP, "train": {**LOOP["train"], "ray": None}})
    assert in_process.train.ray is None and in_process.output_hash() != parse_flywheel(LOOP).output_hash()
