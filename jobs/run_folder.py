"""A job's output folder (a loop's, an ablation's): the marker file that names the configuration it
holds, and the JSON files that mark how far the job got, each written whole."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from configs import ConfigError


def write_json(path: Path, obj) -> None:
    """Written under a temporary name, flushed to disk, then renamed: a killed job (or machine)
    leaves the old file or the new, never part of one, and a resumed job trusts what it reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1) + "\n")  # in the order written: a round's steps read in order
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def claim(root: Path, marker: str, what: str, config_hash: str, record: dict, overwrite: bool) -> None:
    """Make `root` the folder of the configuration `config_hash` (a `what`: loop, ablation): emptied
    first with `overwrite`; a folder holding another configuration's `marker`, or files and no
    marker, is refused; the marker (`record` with the hash) is written."""
    path = root / marker
    if overwrite and root.exists():
        shutil.rmtree(root)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["config_hash"] != config_hash:
            raise ConfigError(f"{root} holds {what} of another configuration ({saved['config_hash']}, this one is "
                              f"{config_hash}): use --overwrite, or another output")
    elif root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty and holds no {what.split()[-1]}: use --overwrite, or another output")
    write_json(path, {**record, "config_hash": config_hash})


class FolderJob:
    """A job that works in one output folder (`root`) from a configuration, and says what it does
    on stderr unless `progress` is off."""

    def __init__(self, config, root: str | Path, progress: bool = True):
        self.config, self.root, self.progress = config, Path(root).absolute(), progress

    def say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)
