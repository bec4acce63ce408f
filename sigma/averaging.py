"""An exponential moving average of a model's weights, kept while it trains and scored instead of
the last step's weights.

Small-scale recipe comparisons are noisy, and much of the noise is where the last optimizer steps
left the weights; an average over the last steps removes most of it (Polyak and Juditsky 1992;
checkpoint averaging for LLM pretraining: Sanyal et al. 2023, arXiv 2306.03241; "Signal and
Noise", AI2 2025, for recipe rankings). The average is saved with every checkpoint
(``ema.safetensors``), so a resumed run continues the same average; ``ema_checkpoint`` writes it
as a checkpoint folder of its own, which every reader of checkpoints scores as it scores any.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model
from torch import nn

from sigma.checkpoint import find_checkpoint

EMA_FILE = "ema.safetensors"


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay {decay} must be between 0 and 1")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        torch._foreach_lerp_(list(self.module.parameters()), [p.detach() for p in model.parameters()], 1 - self.decay)

    def load(self, checkpoint_path: Path) -> None:
        load_model(self.module, str(checkpoint_path / EMA_FILE), strict=True)


def ema_checkpoint(run: str | Path) -> Path:
    """``RUN/ema/``: the latest checkpoint with its average as the weights (written once per step)."""
    latest = find_checkpoint(run)
    if latest is None or not (latest / EMA_FILE).exists():
        raise FileNotFoundError(f"{run}: no checkpoint with {EMA_FILE} (train with ema_decay > 0)")
    out = Path(run) / "ema"
    state = json.loads((latest / "state.json").read_text())
    if (out / "state.json").exists() and json.loads((out / "state.json").read_text()).get("step") == state["step"]:
        return out
    tmp = out.with_name(".ema.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(latest / EMA_FILE, tmp / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (latest / name).exists():
            shutil.copyfile(latest / name, tmp / name)
    (tmp / "state.json").write_text(json.dumps({**state, "weights": "ema"}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out
