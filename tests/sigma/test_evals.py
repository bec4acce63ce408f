"""`sigma eval`: NL -> command scores and held-out perplexity, for SmolLM2 (transformers) and a
sigma checkpoint trained here, on NL2Bash's dev pairs (outside the repository) and curated shards."""

import json
import math

import pytest

from jobs.sigma_command import main as sigma
from sigma.evals.nl2cmd import Pair, build_prompt, extract_command, load_pairs, score, split, token_f1
from sigma.evals.shell import command_name


def test_scores_of_one_prediction():
    assert score("find  . -name '*.py'", "find . -name '*.py'") == {"exact_match": 1.0, "command_name": 1.0,
                                                                     "token_f1": 1.0}
    s = score("sudo find /tmp -type f", "find . -type f")
    assert s["exact_match"] == 0.0 and s["command_name"] == 1.0 and s["token_f1"] == pytest.approx(2 / 3)  # 3 shared tokens of 5 and 4
    assert score("", "ls")["command_name"] == 0.0 and token_f1("grep -r x", "ls") == 0.0
    assert command_name("LC_ALL=C env /usr/bin/sort -u f") == "sort" and command_name("$ ls -l") == "ls"


def test_answers_are_read_to_their_command():
    assert extract_command("```bash\nls -la /tmp\n```\nThis lists files.") == "ls -la /tmp"
    assert extract_command(" Command: `du -sh .`") == "du -sh ."
    assert extract_command("\n\n") == ""


def test_examples_are_set_aside_and_the_sample_is_seeded(nl2bash):
    pairs = load_pairs(nl2bash)
    examples, items = split(pairs, 3, 50, seed=0)
    assert len(examples) == 3 and len(items) == 50
    assert not {(p.nl, p.cmd) for p in examples} & {(p.nl, p.cmd) for p in items}
    assert split(pairs, 3, 50, seed=0) == (examples, items) and split(pairs, 3, 50, seed=1)[1] != items
    prompt = build_prompt("list files", [Pair("show the date", "date")])
    assert prompt.plain == "Task: show the date\nCommand: date\n\nTask: list files\nCommand:"
    assert prompt.messages[1:] == (("user", "show the date"), ("assistant", "date"), ("user", "list files"))


@pytest.mark.slow
def test_nl2cmd_smollm2_on_nl2bash(smollm2, nl2bash, tmp_path):
    out = tmp_path / "smollm2.json"
    assert sigma(["eval", "nl2cmd", "--model", "smollm2", "--backend", "transformers", "--device", "cpu",
                  "--data", str(nl2bash), "--limit", "8", "--shots", "2", "--max-new-tokens", "32",
                  "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["engine"] == "transformers" and result["chat"] and result["items"] == 8
    assert result["shots_used_mean"] == 2
    scores = result["scores"]
    assert set(scores) == {"exact_match", "command_name_accuracy", "token_f1"}
    assert all(0 <= v <= 1 for v in scores.values())
    # a real model: right programs for some tasks (find, chmod, ...), some shared tokens
    assert scores["command_name_accuracy"] > 0 and scores["token_f1"] > 0
    assert len(result["examples"]) == 8 and all(e["prediction"] for e in result["examples"])


@pytest.fixture(scope="module")
def run(curated_man, curated_logs, tokenizer_file, tmp_path_factory):
    from sigma.train import TrainConfig, train

    out = tmp_path_factory.mktemp("evals") / "run"
    config = TrainConfig(model="sigma-tiny", seq_len=128, batch_size=8, max_steps=60, lr=3e-3, warmup_steps=10,
                         held_out_fraction=0.05, eval_every=60, eval_sequences=8, save_every=60, log_every=20)
    train(config, [curated_man, curated_logs], out, tokenizer=tokenizer_file, progress=False)
    return out


@pytest.mark.slow
def test_nl2cmd_sigma_checkpoint(run, nl2bash, tmp_path):
    """sigma-tiny reads 256 tokens: examples are dropped until the prompt fits; every item is scored."""
    out = tmp_path / "tiny.json"
    assert sigma(["eval", "nl2cmd", "--model", str(run), "--data", str(nl2bash), "--limit", "6", "--shots", "3",
                  "--max-new-tokens", "24", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["engine"] == "sigma" and not result["chat"] and result["items"] == 6
    assert 0 <= result["shots_used_mean"] <= 3
    assert set(result["scores"]) == {"exact_match", "command_name_accuracy", "token_f1"}
    assert all(e["finish_reason"] in ("stop", "eos", "length", "prompt_too_long") for e in result["examples"])


def test_held_out_perplexity_per_kind(run, curated_man, curated_logs, tmp_path):
    out = tmp_path / "ppl.json"
    assert sigma(["eval", "perplexity", "--model", str(run), "--data", str(curated_man), str(curated_logs),
                  "--held-out-fraction", "0.05", "--max-documents", "8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["kinds"]) == {"doc", "log"}
    for kind in result["kinds"].values():
        assert kind["documents"] >= 1 and kind["tokens"] > 0 and kind["bits_per_byte"] > 0
        assert kind["loss"] < math.log(512)  # better than chance over sigma-tiny's vocabulary: it learned
    assert result["kinds"]["log"]["loss"] < result["kinds"]["doc"]["loss"]  # logs repeat themselves
    total = result["all"]
    assert total["tokens"] == sum(k["tokens"] for k in result["kinds"].values())
