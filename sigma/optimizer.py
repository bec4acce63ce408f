"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules.

Schedules: linear warmup, then cosine decay to ``min_lr_ratio * lr``, or warmup-stable-decay
(WSD, Hu et al. 2024, MiniCPM): constant after warmup, then a linear decay over the last
``decay_fraction`` of the steps, which lets a run be extended from any checkpoint before the decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    fused: bool,
) -> torch.optim.AdamW:
    """Matrices (and the embedding) decay; norm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def learning_rate(
    step: int,
    *,
    lr: float,
    max_steps: int,
    warmup_steps: int,
    min_lr_ratio: float,
    schedule: str,
    decay_fraction: float = 0.2,
) -> float:
    min_lr = lr * min_lr_ratio
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
    if schedule == "wsd":
        decay_steps = max(1, round(decay_fraction * max_steps))
        decay_start = max_steps - decay_steps
        if step < decay_start:
            return lr
        return lr - (lr - min_lr) * min(1.0, (step - decay_start + 1) / decay_steps)
    raise ValueError(f"unknown schedule {schedule!r}: use 'cosine' or 'wsd'")
