"""Training checkpoints that resume exactly, written atomically.

``RUN/checkpoints/step_XXXXXXXX/`` holds:

- ``model.safetensors``: the weights (a tied output head is stored once);
- ``optimizer.pt``: the optimizer state, loadable with ``torch.load(weights_only=True)``;
- ``rng.pt``: the torch RNG states, also ``weights_only`` loadable;
- ``state.json``: step, tokens seen, every rank's data position, the model and train configs;
- ``tokenizer.json``: the tokenizer the run trained with, so a checkpoint exports on its own;
- ``tokenizer_config.json``, where the run started from a converted model: its special tokens
  and chat template, carried from checkpoint to checkpoint;
- ``ema.safetensors``, where the run keeps a moving average of its weights (``sigma.averaging``).

A checkpoint is written under a temporary name and renamed into place, then ``RUN/checkpoints/
latest`` (a one-line file naming it) is replaced the same way, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

LATEST = "latest"


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return self.state["step"]


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    tokenizer_json: str,
    keep: int = 2,
    extra_files: dict[str, str] | None = None,
    extra_models: dict[str, nn.Module] | None = None,
) -> Path:
    """Write one checkpoint for ``state['step']`` and keep the newest ``keep`` of them.

    ``extra_files`` (name -> text) go in beside, e.g. a converted model's ``tokenizer_config.json``;
    ``extra_models`` (file name -> module) too, as safetensors, e.g. the weights' moving average.
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{state['step']:08d}"
    final = root / name
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    (tmp / "tokenizer.json").write_text(tokenizer_json)
    for file_name, text in (extra_files or {}).items():
        (tmp / file_name).write_text(text)
    for file_name, module in (extra_models or {}).items():
        save_model(module, str(tmp / file_name))
    _fsync_files(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomically(root / LATEST, name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old)
    return final


def find_checkpoint(path: str | Path) -> Path | None:
    """A checkpoint folder itself, or a run folder's latest checkpoint; None if there is none."""
    path = Path(path)
    if (path / "state.json").exists():
        return path
    latest = checkpoint_dir(path) / LATEST
    if latest.exists():
        return checkpoint_dir(path) / latest.read_text().strip()
    return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    found = find_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint at {path} (expected a step_* folder or a run folder with checkpoints/)")
    return Checkpoint(found, json.loads((found / "state.json").read_text()))


def load_weights(checkpoint: Checkpoint, model: nn.Module) -> None:
    missing, unexpected = load_model(model, str(checkpoint.path / "model.safetensors"), strict=True)
    if missing or unexpected:
        raise ValueError(f"checkpoint weights do not fit the model: missing {missing}, unexpected {unexpected}")


def load_training_state(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Restore the optimizer and the RNG states (weights are loaded by ``load_weights``)."""
    optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", map_location=device, weights_only=True))
    rng = torch.load(checkpoint.path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fsync_files(path: Path) -> None:
    for child in path.iterdir():
        with open(child, "rb") as f:
            os.fsync(f.fileno())
