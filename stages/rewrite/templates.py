"""Versioned prompt templates: one YAML file per task in `configs/prompts/` (`TASK.yaml`, read from
the installed package), or in a folder of one's own (`prompt_dir`).

A template says which parent documents it applies to, how much of a parent the model sees (an
excerpt), the request as chat messages and as a plain text to continue, worked examples shown
before it (few-shot), the sampling budget, how the output is checked, parsed and verified against
the parent, and how the child document is written. The answer's form is held two ways: the
answer starts with the template's `cue` (a chat model's turn is opened with it, a base model's
text ends with it; `{setting}` in it is the excerpt's first setting, so an annotation starts by
naming a setting the file has, and `{program}` the man page's program, so a command starts with
the program it documents), and stop strings end it. Every synthetic row records the template's
`version`: change a prompt, bump the version, and rows made with either stay told apart.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import xxhash
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import configs
from pipeline.schema import KINDS
from sigma.backends.base import Prompt
from stages.verify.config_keys import first_setting
from stages.verify.man_options import head_options, list_heads, page_program, section

FOLDER = "prompts"
FORMATS = ("prose", "qa_pairs", "command_pairs", "settings")
# what an answer is checked against on the machine (`stages/rewrite/verified.py`): its commands
# against the man pages, a man page's options, the parent file's setting names, the log's values
VERIFY = ("commands", "man_answers", "settings", "log_values")
COMMENT = re.compile(r"^\s*(#|;|//)")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parents(Strict):
    """Which documents a task takes as parents: by kind and source; long enough to work on."""

    kinds: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # empty: any source
    exclude_sources: tuple[str, ...] = ()
    min_chars: int = 200

    def accepts(self, kind: str | None, source: str | None, chars: int) -> bool:
        return ((not self.kinds or kind in self.kinds) and (not self.sources or source in self.sources)
                and source not in self.exclude_sources and chars >= self.min_chars)


class Excerpt(Strict):
    """The part of the parent the model sees: its first lines, at most `max_chars` characters;
    with `skip_comments`, lines that are only a comment (`#`, `;`, `//`) or blank are left out,
    so a configuration file's settings reach the model rather than its header; with `sections`,
    a rendered man page's first line and those sections, in that order (`[NAME, SYNOPSIS,
    OPTIONS]`: the option list reaches the model before the budget is spent), the whole text
    where it has none of them."""

    max_chars: int = Field(1500, gt=0)
    max_lines: int | None = None
    skip_comments: bool = False
    sections: tuple[str, ...] = ()


class FormField(Strict):
    """One field of an answer written field by field: `text` goes into the answer as it is
    (`{program}`, `{setting}` filled), then the model writes until one of `stop`."""

    text: str
    stop: tuple[str, ...] = ("\n",)


class Check(Strict):
    """How the output is checked, and parsed for the formats with structure (pairs, settings)."""

    format: Literal[FORMATS] = "prose"  # type: ignore[valid-type]
    min_chars: int = 40  # of the parsed output
    max_copy: float | None = 0.5  # share of the output's word 5-grams found in the excerpt
    on_length: Literal["drop", "trim"] = "trim"  # an output cut by the token budget: drop, or trim to its last full sentence or pair
    max_items: int = 8  # pairs or settings kept
    grounded: bool = True  # command_pairs: the command's name appears in the parent; settings: the key appears in the excerpt
    verify: Literal[VERIFY] | None = None  # type: ignore[valid-type]


class Example(Strict):
    """A worked example shown before the request: an input (an excerpt) and the answer to it,
    starting with the template's cue."""

    input: str
    output: str


class PromptTemplate(Strict):
    task: str
    version: int = Field(ge=1)
    description: str = ""
    parents: Parents
    excerpt: Excerpt = Excerpt()
    output_kind: str
    system: str = ""
    user: str  # with {input}
    plain: str  # with {input}; ends where the model's answer starts (trailing whitespace is dropped)
    cue: str = ""  # the start of every answer (`Q:`): the end of `plain`, and a chat model's turn opens with it
    examples: tuple[Example, ...] = ()  # few-shot: earlier turns of the chat, earlier texts of the plain prompt
    # constrained decoding: the answer written field by field, each field's text written for the
    # model (the first is the cue); empty: the model writes the whole answer after the cue
    form: tuple[FormField, ...] = ()
    document: str = "{output}"  # the child document; {input} and {output}
    max_new_tokens: int = Field(192, gt=0)
    stop: tuple[str, ...] = ()
    check: Check = Check()

    @model_validator(mode="after")
    def _placeholders(self) -> "PromptTemplate":
        if self.output_kind not in KINDS:
            raise ValueError(f"output_kind must be one of {', '.join(KINDS)}")
        for name in ("user", "plain"):
            if "{input}" not in getattr(self, name):
                raise ValueError(f"{name} has no {{input}} placeholder")
        if "{output}" not in self.document:
            raise ValueError("document has no {output} placeholder")
        if not self.plain.rstrip().endswith(self.cue):
            raise ValueError(f"plain must end with its cue {self.cue!r}")
        if self.form and self.form[0].text != self.cue:
            raise ValueError(f"the form's first field must be the cue {self.cue!r}")
        for example in self.examples:
            if not example.output.startswith(self.opening(example.input)):
                raise ValueError(f"an example's output must start with the cue {self.opening(example.input)!r}: "
                                 f"{example.output[:60]!r}")
        return self

    def opening(self, excerpt: str) -> str:
        """The cue for this excerpt: `{setting}` filled with the excerpt's first setting, `{program}`
        with the program of the man page it is the start of (where it has none, the cue up to the
        placeholder)."""
        return self.written(self.cue, excerpt)

    @staticmethod
    def written(text: str, excerpt: str) -> str:
        """A cue or a form field's text with its placeholders filled from the excerpt: `{setting}`
        its first setting, `{program}` the program of the man page it is the start of, `{option}`
        one of the options its option list names (picked by a hash of the excerpt). Where the
        excerpt has none, the text ends before the placeholder."""
        for field, read in (("setting", first_setting), ("program", page_program), ("option", _an_option)):
            if "{" + field + "}" in text:
                name = read(excerpt)
                if not name:
                    return text.split("{" + field + "}")[0].rstrip(" ") if field == "option" else text.split("{" + field + "}")[0]
                text = _fill(text, **{field: name})
        return text

    def cut(self, text: str, max_chars: int | None = None) -> str:
        """The excerpt of a parent: whole lines from its start (of its `sections`), within the
        character budget."""
        limit = min(self.excerpt.max_chars, max_chars or self.excerpt.max_chars)
        kept = [f"{name}\n{body.rstrip()}" for name in self.excerpt.sections if (body := section(text, name))]
        if kept:
            text = "\n\n".join([text.strip("\n").split("\n", 1)[0], *kept])
        lines = text.strip("\n").splitlines()
        if self.excerpt.skip_comments:
            lines = [line for line in lines if line.strip() and not COMMENT.match(line)]
        lines = lines[: self.excerpt.max_lines]
        out, size = [], 0
        for line in lines:
            if size + len(line) + 1 > limit:
                if not out:
                    out.append(line[:limit])
                break
            out.append(line)
            size += len(line) + 1
        return "\n".join(out).rstrip()

    def prompt(self, excerpt: str, examples: int | None = None) -> Prompt:
        """The request, after the template's first `examples` examples (default: all): as chat
        turns, and as one text to continue."""
        shown = self.examples[:examples]
        messages = (("system", self.system),) if self.system else ()
        for example in shown:
            messages += (("user", _fill(self.user, input=example.input)), ("assistant", example.output.strip()))
        shots = "".join(self._plain(e.input) + e.output[len(self.opening(e.input)):].rstrip() + "\n\n\n"
                        for e in shown)
        return Prompt(messages + (("user", _fill(self.user, input=excerpt)),), shots + self._plain(excerpt),
                      prefill=self.opening(excerpt))

    def _plain(self, excerpt: str) -> str:
        return _fill(self.plain.rstrip()[: len(self.plain.rstrip()) - len(self.cue)], input=excerpt) + self.opening(excerpt)

    def answer(self, generated: str, excerpt: str = "") -> str:
        """The model's answer: it continued after the cue, in a chat turn or a plain text."""
        return f"{self.opening(excerpt)}{generated}"

    def child_text(self, excerpt: str, output: str) -> str:
        return _fill(self.document, input=excerpt, output=output).strip()


def _an_option(excerpt: str) -> str | None:
    """One option of the excerpt's option list, the same for the same excerpt."""
    options = list(dict.fromkeys(o for head in list_heads(excerpt) for o in head_options(head)
                                 if o not in ("--help", "--version", "-?")))
    return options[xxhash.xxh32_intdigest(excerpt.encode()) % len(options)] if options else None


def _fill(template: str, **values: str) -> str:
    """str.format for the named fields only, so braces in documents and prompts stay as they are."""
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


def load_template(task: str, prompt_dir: str | Path | None = None) -> PromptTemplate:
    """The template of `task` in `prompt_dir`, or shipped in configs/prompts/ when none is given."""
    return _load(task, str(Path(prompt_dir).absolute()) if prompt_dir else None)


@functools.lru_cache(maxsize=64)
def _load(task: str, prompt_dir: str | None) -> PromptTemplate:
    path = configs.named(task, FOLDER, "prompt template for task", within=prompt_dir)
    try:
        template = PromptTemplate.model_validate(configs.read_yaml_mapping(path, "prompt template", "`task:`"))
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
    if template.task != task:
        raise ValueError(f"{path} declares task {template.task!r}, not {task!r}")
    return template
