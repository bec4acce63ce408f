"""The configuration files that ship with the project, and the one reader of YAML configuration.

This folder is a package, installed with the others (`pip install sigma-lm` puts it in
site-packages), so a name resolves from the installed package, from any working folder:

    sigma curate local-system           # configs/local-system.yaml
    - preset: {name: system}            # configs/filters/system.yaml
    prompt template `man_qa`            # configs/prompts/man_qa.yaml

A path is read as given when it exists. A path under `configs/` that does not exist from the
working folder (`sigma flywheel configs/loop/demo.yaml` run elsewhere, or a default such as
`configs/eval/suite.yaml`) is read from the package. Files are read through
`importlib.resources`, never located from a module's `__file__`.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PREFIX = "configs"  # a repository path under this folder can be read from the package


class ConfigError(ValueError):
    """A job file or option that cannot be used, with a message that says why."""


def known_list(name: str, known: list[str]) -> str:
    """`did you mean X? ` for the nearest known name, then `known: A, B, ...`: the end of an
    unknown-name error."""
    near = difflib.get_close_matches(name, known, n=1)
    return (f"did you mean {near[0]}? " if near else "") + f"known: {', '.join(known) or 'none'}"


def shipped(*parts: str) -> Traversable:
    """A file or folder of the installed package: `shipped("filters", "system.yaml")`."""
    return resources.files(__name__).joinpath(*parts)


def names(folder: str | Path | Traversable = "") -> list[str]:
    """The `*.yaml` names (without the suffix) in a folder of the package, or in a folder given."""
    base = shipped(*Path(folder).parts) if isinstance(folder, str) else folder
    if not base.is_dir():
        return []
    return sorted(p.name.rsplit(".", 1)[0] for p in base.iterdir() if p.name.endswith(".yaml") and p.is_file())


def named(name: str, folder: str, what: str, within: str | Path | None = None) -> Path | Traversable:
    """`folder/NAME.yaml` of the package (or of the folder `within`, a user's), or a ConfigError
    that lists the names there."""
    if ".." in Path(name).parts:
        raise ConfigError(f"a {what} name is a file name, without `..`: {name!r}")
    base: Path | Traversable = Path(within) if within else shipped(*Path(folder).parts)
    candidate = base.joinpath(*Path(f"{name}.yaml").parts)
    if candidate.is_file():
        return candidate
    where = f" in {within}" if within else ""
    raise ConfigError(f"no {what} {name!r}{where}; {known_list(name, names(base))}")


def locate(spec: str | os.PathLike | Traversable) -> Path | Traversable:
    """A path as given when it exists; a path under `configs/` that does not is the package's file
    (when the package has it); anything else as given, for the reader to report missing."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    path = Path(spec)
    if path.exists():
        return path
    if len(path.parts) > 1 and path.parts[0] == PREFIX and ".." not in path.parts:
        candidate = shipped(*path.parts[1:])
        if candidate.is_file():
            return candidate
    return path


def find(spec: str, folder: str, what: str) -> Path | Traversable:
    """A path (see `locate`), or a name without a suffix shipped in `folder` (`local-system`, or
    `adapt/man` for configs/adapt/man.yaml)."""
    path = Path(spec)
    if path.exists() or path.suffix or path.is_absolute():
        return locate(spec)
    return named(spec, folder, what)


def read_yaml_mapping(spec: str | os.PathLike | Traversable, what: str = "config file", keys: str = "") -> dict:
    """A YAML file that must hold a mapping (`what`: "job file"; `keys`: what it should have, for
    the error). An empty file is an empty mapping. Every failure is a ConfigError naming the file:
    missing, a folder, not UTF-8, a YAML syntax error (with its line and column), not a mapping."""
    source = locate(spec)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {source}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {source} is a folder, not a YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a UTF-8 text file (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{_position(source, exc)}: not valid YAML: {_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        body = f" with {keys}" if keys else ""
        raise ConfigError(f"{source}: a {what} is a YAML mapping{body}, not a {type(data).__name__}")
    return data


def _position(source: Path | Traversable, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(source)


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        return f"{exc.context}: {exc.problem}" if exc.context else exc.problem
    return str(exc)
