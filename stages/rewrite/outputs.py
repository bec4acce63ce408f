"""Checking what a model wrote: does it do the task? A linear list of early returns, each with a
machine-readable reason (the ledger's), as filters are written.

Reasons: `synth_empty` (nothing), `synth_truncated` (cut by the token budget with nothing whole
left, or `on_length: drop`), `synth_unparsed` (no pair or setting in the asked form),
`synth_ungrounded` (commands that are not the parent's, settings that are not in the excerpt),
`synth_degenerate` (answers that repeat their question or ask another),
`synth_unverified:<problem>` (no item passes the template's check against the machine's ground
truth, `stages/rewrite/verified.py`: `synth_unverified:unknown_option` with `ls:-Z` in the
detail), `synth_copy` (the excerpt repeated back), `synth_too_short`. Items that fail
verification (pairs, settings; a prose answer's sentences from the first that fails on) are left
out of a row that keeps others, and named in `Checked.unverified`. A command pair whose task has
under three words, or whose command repeats a word three times, is degenerate.
Structured answers are rewritten in one canonical form (`Q:`/`A:`, `Task:`/`Command:`,
`- name: what it does`), so every synthetic row of a task reads the same.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from sigma.evals.shell import command_name
from stages.rewrite.templates import PromptTemplate
from stages.rewrite.verified import Verifier

SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
SENTENCE = re.compile(r"[^\n]*?(?:[.!?](?=\s|$)|\n|$)")
QUESTION = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:Q|Question)\s*\d*\s*[:.]\s*(.*)$", re.I)
ANSWER = re.compile(r"^\s*(?:A|Answer)\s*\d*\s*[:.]\s*(.*)$", re.I)
TASK = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:Task|Description|NL)\s*\d*\s*[:.]\s*(.*)$", re.I)
COMMAND = re.compile(r"^\s*(?:Command|Cmd|Bash)\s*\d*\s*[:.]\s*(.*)$", re.I)
SETTING = re.compile(r"^\s*(?:[-*]\s*)?`?([A-Za-z_][\w.\-/\[\]]*)`?\s*(?::|=|-{1,2}|—)\s+(.+)$")
ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.+)$")
INLINE_CODE = re.compile(r"`([^`]+)`")
NUMBERING = re.compile(r"^\s*(?:\[\d+\]|\(\d+\)|\d+[.)])\s*")
WORD = re.compile(r"\w+")
NAME = re.compile(r"\w[\w.+-]*\w|\w")  # a program's name: dpkg-deb, pdb3.11
COPY_NGRAM = 5


@dataclass
class Checked:
    output: str | None  # the answer in canonical form, for the child document
    reason: str | None = None
    detail: str | None = None
    items: int = 0  # pairs or settings kept
    unverified: list[str] = field(default_factory=list)  # problems of the items left out by verification


def _fail(reason: str, detail: str) -> Checked:
    return Checked(None, reason, detail[:300])


def copy_share(output: str, source: str, n: int = COPY_NGRAM) -> float:
    """Share of the output's word n-grams that occur in the source (0 for outputs under n words)."""
    words = WORD.findall(output.lower())
    grams = {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}
    if not grams:
        return 0.0
    src = WORD.findall(source.lower())
    seen = {tuple(src[i : i + n]) for i in range(len(src) - n + 1)}
    return len(grams & seen) / len(grams)


def trim_to_sentence(text: str) -> str:
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]].rstrip() if ends else ""


def _pairs(text: str, first: re.Pattern, second: re.Pattern) -> tuple[list[tuple[str, str]], bool]:
    """(first, second) pairs in the text, continuation lines joining the field above; and whether
    the text ends in a first field without its second (a pair cut short, already left out)."""
    pairs, key, value, field = [], None, None, None
    for line in text.splitlines():
        m1, m2 = first.match(line), second.match(line)
        if m1:
            if key and value:
                pairs.append((key, value))
            key, value, field = m1.group(1).strip(), None, "first"
        elif m2 and key is not None:
            value, field = m2.group(1).strip(), "second"
        elif line.strip() and field == "first" and key is not None:
            key = f"{key} {line.strip()}"
        elif line.strip() and field == "second" and value is not None:
            value = f"{value} {line.strip()}"
    if key and value:
        pairs.append((key, value))
    return [(k, v) for k, v in pairs if k and v], key is not None and value is None


def _markdown_commands(text: str) -> tuple[list[tuple[str, str]], bool]:
    """Tasks as numbered or bulleted items, each with its command in a code block or in backticks
    (how chat models like to answer); and whether the last item was left without a command."""
    pairs, task, fence = [], None, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = not fence
            continue
        if fence:
            if task and stripped:
                pairs.append((task, stripped))
                task = None
            continue
        item = ITEM.match(line)
        if item:
            title = item.group(1).replace("**", "").strip()
            code = INLINE_CODE.findall(title)
            if code and ":" in title:
                pairs.append((title.split(":", 1)[0].strip().rstrip("."), code[-1]))
                task = None
            else:
                task = title.rstrip(":.").strip()
        elif task and INLINE_CODE.fullmatch(stripped):
            pairs.append((task, stripped.strip("`")))
            task = None
    return pairs, task is not None


def _normal(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def _example_items(template: PromptTemplate) -> set[str]:
    """Each line of the template's worked examples, without its label (`Q:`, `Command:`), normalised."""
    lines = (line.split(":", 1)[-1] for e in template.examples for line in e.output.splitlines())
    return {n for n in map(_normal, lines) if n}


def _clean_pair(a: str, b: str) -> tuple[str, str]:
    return NUMBERING.sub("", a).strip(), NUMBERING.sub("", b).strip()


def _unique(items: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """Pairs with distinct first halves (a model that repeats itself gives one pair)."""
    seen, out = set(), []
    for a, b in items:
        key = " ".join(a.lower().split())
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out[:limit]


def _verified(check, items: list[tuple[str, str]], verifier: Verifier | None, excerpt: str, parent: str,
              parent_uri: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    """The items that pass the template's check against the machine, and the others' problems."""
    if check.verify is None or verifier is None:
        return items, []
    problems = verifier.problems(check.verify, items, excerpt, parent, parent_uri)
    return [item for item, p in zip(items, problems) if p is None], [f"{p} in {item[1] or item[0]!r}"[:200]
                                                                     for item, p in zip(items, problems) if p]


def _unverified(problems: list[str]) -> Checked:
    """Dropped as `synth_unverified:<the first problem's code>` (`unknown_option`, `unparsable`, ...);
    the problems, with the items they were found in, are the detail."""
    return _fail(f"synth_unverified:{re.match(r'[a-z_]+', problems[0]).group()}", "; ".join(problems))


def check_output(template: PromptTemplate, answer: str, finish_reason: str, excerpt: str, parent: str,
                 verifier: Verifier | None = None, parent_uri: str | None = None) -> Checked:
    """The answer checked, parsed and verified (`verifier`: against the machine's ground truth, where
    the template asks for it); `parent_uri` says which man page or file the parent is."""
    check = template.check
    unverified: list[str] = []
    text = answer.strip()
    if not text or not WORD.search(text):
        return _fail("synth_empty", f"finish {finish_reason}: {answer!r}")
    truncated = finish_reason == "length"
    if truncated and check.on_length == "drop":
        return _fail("synth_truncated", text[-200:])

    if check.format == "prose":
        if truncated:
            text = trim_to_sentence(text)
            if not text:
                return _fail("synth_truncated", answer.strip()[-200:])
        text = re.sub(r"[ \t]+", " ", text)
        sentences = [(s, "") for s in SENTENCE.findall(text) if s.strip()]
        kept, unverified = _verified(check, sentences, verifier, excerpt, parent, parent_uri)
        if unverified:  # the explanation up to its first sentence that fails
            kept = sentences[: next(i for i, s in enumerate(sentences) if s not in kept)]
            if not kept:
                return _unverified(unverified)
            text = " ".join(s.strip() for s, _ in kept)
        items = 1
    else:
        if check.format == "qa_pairs":
            pairs, dangling = _pairs(text, QUESTION, ANSWER)
            pairs = [_clean_pair(q, a) for q, a in pairs]
        elif check.format == "command_pairs":
            if COMMAND.match(text.splitlines()[0]):  # the command written first, then the task it does
                pairs, dangling = _pairs(text, COMMAND, TASK)
                pairs = [(task, cmd) for cmd, task in pairs]
            else:
                pairs, dangling = _pairs(text, TASK, COMMAND)
            if not pairs:
                pairs, dangling = _markdown_commands(text)
            pairs = [(task, cmd.strip().strip("`").removeprefix("$ ").strip()) for task, cmd in pairs]
        else:
            pairs = [(m.group(1), m.group(2).strip()) for m in map(SETTING.match, text.splitlines()) if m]
            dangling = answer.endswith("\n")
        if truncated and not dangling:
            pairs = pairs[:-1]  # the last one was cut by the token budget
        if not pairs:
            return _fail("synth_truncated" if truncated else "synth_unparsed", text[:300])
        if check.format == "qa_pairs":  # an "answer" that repeats or asks a question answers nothing
            pairs = [(q, a) for q, a in pairs if a.lower() != q.lower() and not a.rstrip().endswith("?")]
            if not pairs:
                return _fail("synth_degenerate", text[:300])
        if check.format == "command_pairs":  # "Task: 22", `x --a=1 --a=1 --a=1`: nothing learnt
            pairs = [(t, c) for t, c in pairs if len(WORD.findall(t)) >= 3 and max(Counter(c.split()).values()) < 3]
            if not pairs:
                return _fail("synth_degenerate", text[:300])
        if template.examples and check.format != "settings":  # the worked example's own items, written again
            shown = _example_items(template)
            pairs = [(a, b) for a, b in pairs if _normal(a) not in shown and _normal(b) not in shown]
            if not pairs:
                return _fail("synth_copy", f"the worked example's items: {text[:260]}")
        if check.grounded and check.format == "command_pairs":
            words = set(NAME.findall(parent.lower()))
            pairs = [(t, c) for t, c in pairs if command_name(c).lower() in words]
            if not pairs:
                return _fail("synth_ungrounded", text[:300])
        elif check.grounded and check.format == "settings":
            pairs = [(k, d) for k, d in pairs if k in excerpt]
            if not pairs:
                return _fail("synth_ungrounded", text[:300])
        pairs, unverified = _verified(check, _unique(pairs, check.max_items), verifier, excerpt, parent, parent_uri)
        if not pairs:
            return _unverified(unverified)
        if check.format == "qa_pairs":
            text = "\n\n".join(f"Q: {q}\nA: {a}" for q, a in pairs)
        elif check.format == "command_pairs":
            text = "\n\n".join(f"Task: {t}\nCommand: {c}" for t, c in pairs)
        else:
            text = "\n".join(f"- {k}: {d}" for k, d in pairs)
        items = len(pairs)

    if check.max_copy is not None:
        share = copy_share(text, excerpt)
        if share > check.max_copy:
            return _fail("synth_copy", f"{share:.2f} of its {COPY_NGRAM}-grams are in the excerpt > {check.max_copy}")
    if len(text) < check.min_chars:
        return _fail("synth_too_short", f"{len(text)} chars < {check.min_chars}")
    return Checked(text, items=items, unverified=unverified)
