"""NL -> command: given a task described in English, write the bash command (in the spirit of
CMDGen in the Sigma paper's AIMicius benchmark, arXiv 2501.13629), scored three ways:

- exact match: the command, whitespace collapsed, equals the reference;
- command-name accuracy: the program it runs first (past `sudo`, `env`, assignments) is the
  reference's;
- token F1: bag-of-tokens F1 between the shell tokens of both (SQuAD's F1 over `shlex` tokens).

Data: any JSONL of `{"nl": ..., "cmd": ...}` (NL2Bash's `dev.jsonl`, Lin et al. LREC 2018).
Few-shot examples come from the same file (or `shots_from`); the `shots` items of lowest seeded
hash are set aside as examples and never scored, and the scored items are the next `limit` in
that hash order, a sample spread over the file. Instruction-tuned models get the examples as
earlier chat turns; base models a plain `Task: ...` / `Command: ...` text, the same form the
`man_nl2cmd` synthesis task writes. A base model with a short context drops examples until the
prompt fits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sigma.backends.base import Backend, Prompt, Sampling
from sigma.evals.shell import command_name, shell_tokens

SYSTEM = "You translate a task described in English into one bash command. Reply with the command only."


@dataclass(frozen=True)
class Pair:
    nl: str
    cmd: str


def load_pairs(path: str | Path) -> list[Pair]:
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("nl"), str) or not isinstance(record.get("cmd"), str):
                raise ValueError(f"{path}:{number}: expected an object with string fields nl and cmd")
            pairs.append(Pair(record["nl"].strip(), record["cmd"].strip()))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def split(pairs: Sequence[Pair], shots: int, limit: int | None, seed: int = 0,
          shot_pool: Sequence[Pair] | None = None) -> tuple[list[Pair], list[Pair]]:
    """(examples, scored items): both in seeded hash order; the examples are never scored."""
    def order(items):
        return sorted(items, key=lambda p: (_digest(f"{seed}\x00{p.nl}\x00{p.cmd}"), p.nl, p.cmd))

    ranked = order(pairs)
    if shot_pool is None:
        examples, rest = ranked[:shots], ranked[shots:]
    else:
        examples = order(shot_pool)[:shots]
        rest = ranked
    held = {(p.nl, p.cmd) for p in examples}
    rest = [p for p in rest if (p.nl, p.cmd) not in held]
    return examples, rest[:limit] if limit else rest


def normalise(command: str) -> str:
    return " ".join(command.strip().rstrip(";").split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = shell_tokens(prediction), shell_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def extract_command(text: str) -> str:
    """The first command line of an answer: past code fences, `Command:` labels and `$ ` prompts."""
    for line in text.strip().splitlines():
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        for label in ("Command:", "command:", "Bash:", "$ "):
            if line.startswith(label):
                line = line[len(label):].strip()
        return line.strip("`").strip()
    return ""


def build_prompt(nl: str, examples: Sequence[Pair]) -> Prompt:
    messages = [("system", SYSTEM)]
    for ex in examples:
        messages += [("user", ex.nl), ("assistant", ex.cmd)]
    messages.append(("user", nl))
    plain = "".join(f"Task: {ex.nl}\nCommand: {ex.cmd}\n\n" for ex in examples) + f"Task: {nl}\nCommand:"
    return Prompt(tuple(messages), plain)


def fitted_prompt(backend: Backend, nl: str, examples: Sequence[Pair], max_new_tokens: int) -> tuple[Prompt | None, int]:
    """The prompt with as many examples as fit the backend's context, and how many that is."""
    examples = list(examples)
    if backend.chat or not backend.max_context:
        return build_prompt(nl, examples), len(examples)
    budget = backend.max_context - max_new_tokens
    while True:
        prompt = build_prompt(nl, examples)
        if backend.count_tokens(prompt.plain) <= budget:
            return prompt, len(examples)
        if not examples:
            return None, 0
        examples.pop()


def score(prediction: str, reference: str) -> dict:
    return {"exact_match": float(normalise(prediction) == normalise(reference)),
            "command_name": float(command_name(prediction) == command_name(reference) != ""),
            "token_f1": token_f1(prediction, reference)}


def evaluate_nl2cmd(backend: Backend, data: str | Path, *, shots: int = 3, limit: int | None = 100, seed: int = 0,
                    max_new_tokens: int = 64, shots_from: str | Path | None = None, batch_size: int = 16,
                    keep_examples: int = 20) -> dict:
    """Scores of ``backend`` on the NL -> command pairs in ``data``; see the module docstring."""
    started = time.time()
    pairs = load_pairs(data)
    examples, items = split(pairs, shots, limit, seed, load_pairs(shots_from) if shots_from else None)
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0, stop=("\n",) if not backend.chat else ())
    rows = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        fitted = [fitted_prompt(backend, p.nl, examples, max_new_tokens) for p in chunk]
        asked = [i for i, (prompt, _) in enumerate(fitted) if prompt is not None]
        generations = backend.generate([fitted[i][0] for i in asked], sampling) if asked else []
        answers = dict(zip(asked, generations))
        for i, pair in enumerate(chunk):
            gen = answers.get(i)
            prediction = extract_command(gen.text) if gen else ""
            rows.append({"nl": pair.nl, "cmd": pair.cmd, "prediction": prediction, "shots": fitted[i][1],
                         "finish_reason": gen.finish_reason if gen else "prompt_too_long", **score(prediction, pair.cmd)})
    n = max(1, len(rows))
    scores = {name: sum(r[name] for r in rows) / n for name in ("exact_match", "command_name", "token_f1")}
    return {
        "task": "nl2cmd", "data": str(data), "items": len(rows), "shots": shots, "seed": seed,
        "shots_used_mean": sum(r["shots"] for r in rows) / n, "max_new_tokens": max_new_tokens,
        **backend.describe(),
        "scores": {"exact_match": scores["exact_match"], "command_name_accuracy": scores["command_name"],
                   "token_f1": scores["token_f1"]},
        "seconds": round(time.time() - started, 2),
        "examples": rows[:keep_examples],
    }
