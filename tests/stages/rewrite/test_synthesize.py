"""The synthesize stage with real engines: SmolLM2-135M-Instruct through transformers writing
children in-process, and a sigma-tiny checkpoint trained here writing them in a synthesis job on
Ray actors (requests -> synthesize -> shards and ledger)."""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.curate import curate
from pipeline.config import parse_job
from stages.rewrite.requests import SynthRequests
from stages.rewrite.synthesize import COLUMNS, Synthesize
from stages.rewrite.templates import load_template

ROOT = Path(__file__).resolve().parents[3]
REASONS = {"synth_empty", "synth_truncated", "synth_unparsed", "synth_ungrounded", "synth_degenerate", "synth_copy",
           "synth_too_short", "synth_prompt_too_long", "synth_unverified:unknown_value", "synth_unverified:unknown_field"}


def _corpus(tmp_path, loghub, docs: list[dict]):
    (tmp_path / "corpus" / "shards").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "corpus" / "shards" / "part-00000-000.parquet")
    return tmp_path / "corpus"


def _requests(corpus, tasks, per_task):
    source = SynthRequests("r", [str(corpus)], tasks, round=1, per_task=per_task)
    rows = [r for payload in source.plan() for result in source.read(payload) for r in result.kept.to_pylist()]
    for i, r in enumerate(rows):
        r.update(_unit=0, _row=i)
    return pa.Table.from_pylist(rows)


def _log_docs(loghub, system: str, count: int, lines: int = 8) -> list[dict]:
    text = (loghub / system / f"{system}_2k.log").read_text().splitlines()
    return [{"id": f"{system}-{i}", "text": "\n".join(text[i * lines:(i + 1) * lines]), "source": "logs",
             "uri": f"{system}#{i}", "kind": "log", "meta": "{}"} for i in range(count)]


@pytest.mark.slow
def test_smollm2_writes_real_children(smollm2, loghub, tmp_path):
    """SmolLM2 explains real log excerpts and rewrites a real README: children are new English
    text after the excerpt, with their provenance; every request is kept or dropped with a reason."""
    readme = (loghub.parent / "README.md").read_text()[:700]
    docs = _log_docs(loghub, "OpenSSH", 2, lines=4) + [
        {"id": "readme", "text": readme, "source": "file", "uri": "README.md", "kind": "doc", "meta": "{}"}]
    batch = _requests(_corpus(tmp_path, loghub, docs), ["explain_log", "rewrite_doc"], per_task=None)
    stage = Synthesize(engine=smollm2.spec.model_dump(), temperature=0.0, max_new_tokens=56, batch_size=4)
    stage.setup()
    assert stage.backend is smollm2  # the session's model, through the backend cache
    result = stage.process(batch)
    kept = result.kept.to_pylist()
    dropped = [] if result.dropped is None else result.dropped.to_pylist()
    assert len(kept) + len(dropped) == 3
    assert {r["reason"] for r in dropped} <= REASONS
    assert result.counts["requests:explain_log"] == 2 and result.counts["requests:rewrite_doc"] == 1
    assert sum(v for k, v in result.counts.items() if k.startswith("kept:")) == len(kept)
    explained = [r for r in kept if r["synth.task"] == "explain_log"]
    assert explained, [(r["reason"], r["text"][:200]) for r in dropped]
    for row in explained:
        excerpt, explanation = row["text"].split("\n\nWhat happened and why: ")
        assert excerpt.startswith("Log excerpt:\n") and "sshd" in excerpt
        words = re.findall(r"[A-Za-z]+", explanation)
        assert len(words) >= 10 and sum(w.lower() in {"the", "a", "to", "of", "and", "is", "was", "that", "user"}
                                         for w in words) >= 3, explanation  # English prose, not log lines
    for row in kept:
        meta = json.loads(row["meta"])
        assert row["source"] == "synthetic" and row["parent_id"] == meta["parent_id"] and row["round"] == 1
        assert row["synth.engine"] == "transformers" and row["synth.model"].startswith("smollm2")
        assert row["synth.prompt_version"] == load_template(row["synth.task"]).version
        assert json.loads(row["synth.sampling"])["temperature"] == 0.0 and row["synth.attempts"] == 1  # greedy: once
        assert meta["engine"] == "transformers" and meta["sampling"]["max_new_tokens"] == 56
        assert row["synth.completion_tokens"] > 0 and row["synth.finish_reason"] in ("eos", "stop", "length")
        assert row["_unit"] == 0 and row["_row"] in (0, 1, 2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, loghub, ray_local):
    """A corpus of real logs, curated, and sigma-tiny trained on it for a few steps."""
    from sigma.tokenizer import train_on_shards
    from sigma.train import TrainConfig, train

    base = tmp_path_factory.mktemp("synth")
    docs = _log_docs(loghub, "OpenSSH", 30) + _log_docs(loghub, "HDFS", 30) + _log_docs(loghub, "Apache", 20)
    (base / "logs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    manifest = curate(parse_job({"inputs": [{"type": "jsonl", "paths": [str(base / "logs.jsonl")]}],
                                 "stages": ["basic_filter"], "writer": {"row_group_rows": 8}}), str(base / "corpus"))
    assert manifest["totals"]["kept"] == 80
    train_on_shards([base / "corpus"], 512, base / "corpus")
    config = TrainConfig(model="sigma-tiny", seq_len=64, batch_size=4, max_steps=30, lr=3e-3, warmup_steps=5,
                         held_out_fraction=0.0, eval_every=30, save_every=30, log_every=10)
    train(config, [base / "corpus"], base / "run", progress=False)
    return base


@pytest.mark.slow
def test_synthesis_job_on_engine_actors(tiny_run, tmp_path):
    """requests -> synthesize (sigma engine on a Ray actor) -> shards: the ledger balances, the
    manifest has requests, kept and samples per task (an answer that fails is sampled again, up to
    max_attempts), and the same job gives the same children again."""
    # a prompt of our own: sigma-tiny after 30 steps writes text of any kind, so the answer ends at a
    # line break and only has to be 25 characters long: some pass, some are sampled again
    template = yaml.safe_load((ROOT / "configs" / "prompts" / "explain_log.yaml").read_text())
    template.update(stop=["\n"], examples=[], check={"format": "prose", "min_chars": 25, "max_copy": None})
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "explain_log.yaml").write_text(yaml.safe_dump(template))
    job = {"inputs": [{"type": "synth_requests", "corpus": [str(tiny_run / "corpus")], "tasks": ["explain_log"],
                       "per_task": 6, "unit_requests": 3, "round": 2, "prompt_dir": str(tmp_path / "prompts")}],
           "stages": [{"synthesize": {"engine": {"backend": "sigma", "model": str(tiny_run / "run"), "device": "cpu"},
                                      "max_new_tokens": 40, "temperature": 0.8, "batch_size": 2, "max_attempts": 2,
                                      "prompt_dir": str(tmp_path / "prompts")}}],
           "writer": {"rejects": "all"}}
    manifest = curate(parse_job(job), str(tmp_path / "a"))
    totals = manifest["totals"]
    assert manifest["units"] == 2 and totals["input"] == 6 and totals["balanced"]
    synth = next(s for s in manifest["stages"] if s["name"] == "synthesize")
    assert synth["docs_in"] == 6 and synth["counts"]["requests:explain_log"] == 6
    assert synth["counts"].get("kept:explain_log", 0) == totals["kept"] == synth["docs_out"]
    assert set(totals["dropped_by_reason"]) <= REASONS
    schema = pq.read_schema(next((tmp_path / "a" / "shards").glob("*.parquet")))
    assert set(COLUMNS) <= set(schema.names)
    children = pq.read_table(tmp_path / "a" / "shards").to_pylist()
    rejects = pq.read_table(tmp_path / "a" / "rejects").to_pylist()
    corpus_ids = set(pq.read_table(tiny_run / "corpus" / "shards", columns=["id"]).column("id").to_pylist())
    for row in children + rejects:
        assert row["source"] == "synthetic" and json.loads(row["meta"])["parent_id"] in corpus_ids
    attempts = [json.loads(r["meta"])["attempts"] for r in children + rejects]  # rejects keep the meta
    assert synth["counts"]["samples:explain_log"] == sum(attempts) and 2 in attempts
    assert [r["synth.attempts"] for r in children] == attempts[: len(children)]
    assert all(a in (1, 2) for a in attempts[: len(children)]) and set(attempts[len(children):]) <= {2}
    for row in children:
        assert row["round"] == 2 and row["synth.engine"] == "sigma" and row["text"].startswith("Log excerpt:\n")
        assert row["synth.prompt_tokens"] <= 256 - 40  # the excerpt was cut to leave room in sigma-tiny's context
    again = curate(parse_job(job), str(tmp_path / "b"))
    assert again["totals"] == totals
    b = pq.read_table(tmp_path / "b" / "shards").to_pylist() if (tmp_path / "b" / "shards").exists() else []
    assert [(r["id"], r["text"]) for r in b] == [(r["id"], r["text"]) for r in children]


def test_an_answer_written_field_by_field(tiny_run, tmp_path, man_root):
    """man_nl2cmd's form: the stage writes `Command: PROGRAM`, the model continues to the end of the
    line, the stage writes `Task:`, the model continues to the end of that line; whatever the model
    (here sigma-tiny, which knows no man pages), every answer has that shape, kept or dropped."""
    from stages.ingest.man import ManSource

    source = ManSource("man", roots=[str(man_root.parent)], sections=["1"], include=["ls", "cat"])
    pages = [r for unit in source.plan() for result in source.read(unit) for r in result.kept.to_pylist()]
    assert len(pages) == 2
    batch = _requests(_corpus(tmp_path, None, pages), ["man_nl2cmd"], per_task=None)
    stage = Synthesize(engine={"backend": "sigma", "model": str(tiny_run / "run"), "device": "cpu"},
                       temperature=0.0, max_new_tokens=12, batch_size=2)
    result = stage.process(batch)
    rows = result.kept.to_pylist() + ([] if result.dropped is None else result.dropped.to_pylist())
    assert len(rows) == 2
    for row in rows:
        program = json.loads(row["meta"])["parent_uri"].rsplit("/", 1)[-1].split(".")[0]
        lines = row["text"].splitlines()
        if row.get("reason") is None:  # the child: task first
            assert lines[0].startswith("Task:") and lines[1].startswith(f"Command: {program}")
        else:  # the answer as the model wrote it, field by field
            assert lines[0].startswith(f"Command: {program}") and lines[1].startswith("Task:") and len(lines) == 2
        assert row["synth.completion_tokens"] <= 2 * 12
