"""A checkpoint's chat template and special tokens (``tokenizer_config.json``), rendered as
``transformers`` renders them: Jinja in a sandbox with ``trim_blocks`` and ``lstrip_blocks``, the
loop-control extension, ``raise_exception``, and the special tokens as variables. Converted models
carry the source's file (``sigma convert``); checkpoints trained from scratch have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token")


@dataclass(frozen=True)
class ChatSettings:
    template: str | None
    special_tokens: dict[str, str]  # bos_token, eos_token, ... -> the token's text

    def render(self, messages: Sequence[tuple[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.template:
            raise ValueError("this checkpoint has no chat template")
        return _compile(self.template).render(
            messages=[{"role": role, "content": content} for role, content in messages],
            add_generation_prompt=add_generation_prompt, **self.special_tokens,
        )


def load_chat_settings(checkpoint_dir: str | Path) -> ChatSettings | None:
    """The settings in ``checkpoint_dir/tokenizer_config.json``; None where there is no such file."""
    path = Path(checkpoint_dir) / TOKENIZER_CONFIG_FILE
    if not path.exists():
        return None
    values = json.loads(path.read_text())
    special = {}
    for key in _SPECIAL:
        token = values.get(key)
        if isinstance(token, dict):  # an AddedToken written out in full
            token = token.get("content")
        if token:
            special[key] = token
    return ChatSettings(values.get("chat_template"), special)


def _compile(template: str):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)
