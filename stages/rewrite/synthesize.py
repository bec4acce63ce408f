"""The synthesis stage: a model rewrites or synthesizes a child document from each request.

Input rows are requests (`stages/rewrite/requests.py`): each already is the child it asks for,
holding its parent's text. The stage builds the task's prompt from an excerpt of that text (after
the template's worked examples), asks the engine, checks, parses and verifies the answer against
the machine's ground truth (`stages/rewrite/outputs.py`, `stages/rewrite/verified.py`), and writes
the child's text in the template's form. An answer that fails is asked again with a new seed, up
to `max_attempts` samples a request (the limit is in the manifest's configuration, the samples a
row took in `synth.attempts`); a request whose last answer still fails is dropped with that
answer's reason (`synth_unverified:unknown_option`, ...), and its text is the model's answer, so
the rejects show what the model wrote. One request, one row: kept + dropped = requests, as the
ledger needs.

It runs on Ray Data actors that hold the engine (`Resources(actor=True)`), one GPU each where the
cluster has GPUs (`num_gpus`, default: 1 if the cluster has any, else 0; 0 for a server URL).
Sampling is seeded per batch from `seed`, the batch's first id and the attempt: a unit run again
(a resumed job) gets the same batches, so the same children. Greedy decoding (temperature 0)
samples once: another seed would give the same answer.

Synthetic rows then go through the same filters and dedupe as crawled data: the loop curates
them with the next round's sources (dedupe against the existing corpus included).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pyarrow as pa
import xxhash

from pipeline.stage import Resources, Result, Stage, set_columns, split_dropped
from sigma.backends.base import Backend, EngineSpec, Generation, Sampling, load_backend
from stages.rewrite.outputs import check_output
from stages.rewrite.templates import PromptTemplate, load_template
from stages.rewrite.verified import Verifier

COLUMNS = {
    "parent_id": pa.string(),
    "round": pa.int32(),
    "synth.task": pa.string(),
    "synth.engine": pa.string(),
    "synth.model": pa.string(),
    "synth.prompt_version": pa.int32(),
    "synth.sampling": pa.string(),  # JSON: temperature, top_k, top_p, max_new_tokens, stop, seed
    "synth.finish_reason": pa.string(),
    "synth.prompt_tokens": pa.int32(),
    "synth.completion_tokens": pa.int32(),
    "synth.items": pa.int32(),  # pairs or settings in the child; 1 for prose
    "synth.attempts": pa.int32(),  # samples taken: 1, or more where an answer failed its checks
}
MIN_EXCERPT_CHARS = 80


class Synthesize(Stage):
    """Rewrite/synthesis with a language model (see the module docstring). `engine`: a backend
    spec (`{backend: sigma|transformers|vllm, model: ..., url: ...}`); `temperature`, `top_k`,
    `top_p`, `seed`: sampling; `max_new_tokens`: overrides the templates' budgets; `max_attempts`:
    samples per request while its answer fails a check; `verify: false` skips the templates'
    checks against the machine (to measure what they are worth; rows then record `verified: null`);
    `man_roots`: the man pages commands are verified against (default /usr/share/man); `batch_size`: requests per engine call;
    `num_gpus`, `concurrency`: per actor, and how many actors."""

    name = "synthesize"

    def __init__(self, engine: dict[str, Any], temperature: float = 0.7, top_k: int = 0, top_p: float = 0.95,
                 seed: int = 0, max_new_tokens: int | None = None, max_attempts: int = 3, verify: bool = True,
                 prompt_dir: str | None = None, man_roots: list[str] | None = None, batch_size: int = 16,
                 num_gpus: float | None = None, concurrency: int | None = 1):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.spec = EngineSpec.model_validate(engine)
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed
        self.max_new_tokens, self.max_attempts, self.prompt_dir = max_new_tokens, max_attempts, prompt_dir
        self.man_roots, self.verify = man_roots, verify
        self.verifier: Verifier | None = None
        self.batch_size, self.concurrency, self._num_gpus = batch_size, concurrency, num_gpus
        self.backend: Backend | None = None

    @property
    def resources(self) -> Resources:
        if self._num_gpus is None:
            self._num_gpus = 0.0 if self.spec.url or self.spec.device == "cpu" else _cluster_has_gpus()
        return Resources(num_cpus=1, num_gpus=self._num_gpus, batch_size=self.batch_size,
                         concurrency=self.concurrency, actor=True)

    def columns(self) -> dict[str, pa.DataType]:
        return dict(COLUMNS)

    def setup(self) -> None:
        self.backend = load_backend(self.spec)
        self.verifier = Verifier(self.man_roots) if self.verify else None

    def sampling(self, template: PromptTemplate, first_id: str, attempt: int = 0) -> Sampling:
        key = f"{self.seed}\x00{first_id}" + (f"\x00{attempt}" if attempt else "")
        return Sampling(max_new_tokens=self.max_new_tokens or template.max_new_tokens, temperature=self.temperature,
                        top_k=self.top_k, top_p=self.top_p, stop=template.stop,
                        seed=xxhash.xxh32_intdigest(key.encode()) & 0x7FFFFFFF)

    def _excerpt(self, template: PromptTemplate, text: str, max_new_tokens: int) -> tuple[str, int] | None:
        """The parent's excerpt and how many of the template's examples go before it: in a small
        context, examples are left out first, then the excerpt is shortened, until the prompt
        leaves room for the answer."""
        excerpt, examples = template.cut(text), len(template.examples)
        backend = self.backend
        if backend.chat or not backend.max_context:
            return excerpt, examples
        budget = backend.max_context - max_new_tokens
        while backend.count_tokens(template.prompt(excerpt, examples).plain) > budget:
            if examples:
                examples -= 1
                continue
            if len(excerpt) <= MIN_EXCERPT_CHARS:
                return None
            excerpt = template.cut(text, max(MIN_EXCERPT_CHARS, int(len(excerpt) * 0.7)))
        return excerpt, examples

    def process(self, batch: pa.Table) -> Result:
        if self.backend is None:
            self.setup()
        rows = batch.to_pylist()
        metas = [json.loads(r["meta"] or "{}") for r in rows]
        out: list[dict] = [{} for _ in rows]
        reasons: list[str | None] = [None] * len(rows)
        details: list[str | None] = [None] * len(rows)
        engine = self.backend.describe()
        tasks = list(dict.fromkeys(m["task"] for m in metas))
        for task in tasks:
            template = load_template(task, self.prompt_dir)
            indices = [i for i, m in enumerate(metas) if m["task"] == task]
            sampling = self.sampling(template, rows[indices[0]]["id"])
            fitted = {i: self._excerpt(template, rows[i]["text"] or "", sampling.max_new_tokens) for i in indices}
            asked = [i for i in indices if fitted[i] is not None]
            for i in indices:
                if fitted[i] is None:
                    reasons[i], details[i] = "synth_prompt_too_long", f"no excerpt fits {self.backend.max_context} tokens"
            self._ask(template, rows, asked, fitted, sampling, out, reasons, details)
            for i in indices:
                metas[i].update(engine=engine["engine"], model=engine["model"], sampling=sampling.to_dict(),
                                finish_reason=out[i].get("finish"), attempts=out[i].get("attempts"),
                                verified=template.check.verify if self.verify else None)
                if out[i].get("unverified"):
                    metas[i]["unverified"] = out[i]["unverified"]
                out[i]["sampling"] = json.dumps(sampling.to_dict(), sort_keys=True)
                out[i]["version"] = template.version
        result = split_dropped(self._children(batch, rows, metas, out), reasons, details)
        counts = {}  # per task, summed into the manifest's counts of this stage: acceptance = kept / requests
        for meta, reason, o in zip(metas, reasons, out):
            counts[f"requests:{meta['task']}"] = counts.get(f"requests:{meta['task']}", 0) + 1
            counts[f"samples:{meta['task']}"] = counts.get(f"samples:{meta['task']}", 0) + (o.get("attempts") or 0)
            if reason is None:
                counts[f"kept:{meta['task']}"] = counts.get(f"kept:{meta['task']}", 0) + 1
        result.counts = counts
        return result

    def _generate(self, template: PromptTemplate, fitted: list[tuple[str, int]], sampling: Sampling) -> list[Generation]:
        """The model's answers after the cue; with the template's `form`, written field by field: each
        field's text is written into the answer (a chat model's turn, a base model's text) and the
        model continues it until the field's stop strings, one engine call a field."""
        prompts = [template.prompt(*f) for f in fitted]
        if not template.form:
            return self.backend.generate(prompts, sampling)
        openings = [template.opening(excerpt) for excerpt, _ in fitted]
        written = list(openings)
        done = [Generation("", "stop") for _ in prompts]
        for k, field in enumerate(template.form):
            if k:
                written = [w + template.written(field.text, excerpt) for w, (excerpt, _) in zip(written, fitted)]
            step = [replace(p, prefill=w, plain=p.plain + w[len(o):]) for p, w, o in zip(prompts, written, openings)]
            for i, gen in enumerate(self.backend.generate(step, replace(sampling, stop=field.stop))):
                written[i] += gen.text
                done[i] = Generation(written[i][len(openings[i]):], gen.finish_reason, gen.prompt_tokens,
                                     done[i].completion_tokens + gen.completion_tokens)
        return done

    def _ask(self, template: PromptTemplate, rows: list[dict], asked: list[int], fitted: dict, sampling: Sampling,
             out: list[dict], reasons: list, details: list) -> None:
        """Sample answers for the requests `asked`, again with a new seed for those whose answer
        fails, up to `max_attempts` samples; each request ends with its last answer's verdict."""
        attempts = self.max_attempts if sampling.temperature > 0 else 1
        pending = list(asked)
        for attempt in range(attempts):
            if not pending:
                break
            draw = sampling if attempt == 0 else replace(sampling, seed=self.sampling(template, rows[asked[0]]["id"],
                                                                                      attempt).seed)
            generations = self._generate(template, [fitted[i] for i in pending], draw)
            failed = []
            for i, gen in zip(pending, generations):
                excerpt = fitted[i][0]
                answer = template.answer(gen.text, excerpt)
                meta = json.loads(rows[i]["meta"] or "{}")
                checked = check_output(template, answer, gen.finish_reason, excerpt, rows[i]["text"] or "",
                                       self.verifier, meta.get("parent_uri"))
                reasons[i], details[i] = checked.reason, checked.detail
                text = template.child_text(excerpt, checked.output) if checked.output is not None else answer
                spent = out[i].get("completion_tokens", 0)
                out[i] = {"text": text, "finish": gen.finish_reason, "prompt_tokens": gen.prompt_tokens,
                          "completion_tokens": spent + gen.completion_tokens, "items": checked.items,
                          "attempts": attempt + 1, "unverified": checked.unverified}
                if checked.reason is not None:
                    failed.append(i)
            pending = failed

    def _children(self, batch: pa.Table, rows: list[dict], metas: list[dict], out: list[dict]) -> pa.Table:
        engine = self.backend.describe()
        n = len(rows)
        batch = batch.set_column(batch.schema.get_field_index("text"), "text",
                                 pa.array([o.get("text", r["text"]) for o, r in zip(out, rows)], batch.schema.field("text").type))
        batch = batch.set_column(batch.schema.get_field_index("meta"), "meta",
                                 pa.array([json.dumps(m, sort_keys=True) for m in metas], pa.string()))
        values = {
            "parent_id": [m.get("parent_id") for m in metas],
            "round": [m.get("round") for m in metas],
            "synth.task": [m.get("task") for m in metas],
            "synth.engine": [engine["engine"]] * n,
            "synth.model": [engine["model"]] * n,
            "synth.prompt_version": [o.get("version") for o in out],
            "synth.sampling": [o.get("sampling") for o in out],
            "synth.finish_reason": [o.get("finish") for o in out],
            "synth.prompt_tokens": [o.get("prompt_tokens") for o in out],
            "synth.completion_tokens": [o.get("completion_tokens") for o in out],
            "synth.items": [o.get("items") for o in out],
            "synth.attempts": [o.get("attempts") for o in out],
        }
        return set_columns(batch, {name: pa.array(values[name], dtype) for name, dtype in COLUMNS.items()})


def _cluster_has_gpus() -> float:
    try:
        import ray

        return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    except ImportError:
        return 0.0
