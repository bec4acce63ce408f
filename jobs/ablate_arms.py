"""What each arm of an ablation trains: its name (variant, seed, learning-rate scale) and its
TrainConfig, derived from the ablation's settings; shared by the bundle that records the arms
and the train phase that runs them."""

from __future__ import annotations

import json

from configs import ConfigError


def train_config(spec: str, overrides: dict, tokens: int, seed: int, workers: int = 1) -> dict:
    """An arm's TrainConfig as a dict: the ablation's model and settings, `max_steps` from the
    token budget (`workers` ranks each take a batch a step). No held-out split of the variant's own
    data (each variant's would be different text): the suite is the held-out set."""
    from sigma.train import TrainConfig

    try:
        base = TrainConfig.load(spec).override(**overrides)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"train.config: {exc}") from None
    per_step = base.batch_size * base.sequence_length() * base.grad_accum * workers
    if tokens % per_step:
        low = tokens // per_step * per_step
        raise ConfigError(f"train.tokens {tokens:,} is not a whole number of steps of {per_step:,} tokens "
                          f"(batch_size x seq_len x grad_accum{' x workers' if workers > 1 else ''}): "
                          f"use {max(low, per_step):,} or {low + per_step:,}")
    steps = tokens // per_step
    if base.warmup_steps >= steps:
        raise ConfigError(f"warmup_steps {base.warmup_steps} is not below the budget's {steps} steps")
    # as JSON reads it back (lists, not tuples), to compare with what checkpoints and scores record
    return json.loads(json.dumps(base.override(max_steps=steps, seed=seed, held_out_fraction=0.0).to_dict()))


def arm_names(variants: list[str], seeds: list[int], lr_scales: list[float]) -> list[tuple[str, str, int, float]]:
    """(arm, variant, seed, lr scale): learning rates, then seeds, then variants, so a time limit
    cuts the last learning rate first, and then a seed of every variant rather than a variant."""
    return [(f"{v}{'' if lr == 1 else f'-lr{lr:g}'}-seed{s}", v, s, lr) for lr in lr_scales for s in seeds for v in variants]


def arm_specs(settings: dict, lr_scales: list[float] | None = None, ema_decay: float | None = None) -> list[dict]:
    ema = settings["score"]["ema_decay"] if ema_decay is None else ema_decay
    specs = []
    for arm, variant, seed, lr in arm_names(settings["variants"], settings["seeds"], lr_scales or settings["lr_scales"]):
        config = dict(settings["train_configs"][str(seed)])
        config.update(lr=config["lr"] * lr, ema_decay=ema)
        specs.append({"arm": arm, "variant": variant, "seed": seed, "lr_scale": lr, "budget": settings["budget"],
                      "sample": settings["samples"][variant], "train_config": config})
    return specs
