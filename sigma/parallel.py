"""Data parallelism around the model, added from outside it (torchtitan's way): DDP or FSDP.

- ``ddp``: every rank holds the whole model and optimizer state; gradients are all-reduced.
- ``fsdp``: torch's ``fully_shard`` (FSDP2) on every block and on the root, so parameters,
  gradients and AdamW's two moments are split across ranks, and each block's full weights exist
  only while it runs; for presets whose optimizer state does not fit on one device.

Checkpoints are the same files in both modes: the weights as one safetensors file and the
optimizer state as one ``torch.save`` file, gathered in full from the shards (``FullShards``) on
every rank and written by rank 0; a resume scatters them again.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn

PARALLELISMS = ("ddp", "fsdp")


def parallelize(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """The module to train: DDP wraps the model; FSDP shards it in place and returns it."""
    if mode not in PARALLELISMS:
        raise ValueError(f"unknown parallelism {mode!r}; one of {', '.join(PARALLELISMS)}")
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(train_model: nn.Module, enabled: bool) -> Iterator[None]:
    """Reduce gradients in this backward pass only if ``enabled`` (off for all but the last
    micro-batch of a gradient-accumulation step)."""
    if hasattr(train_model, "no_sync"):  # DDP
        with contextlib.nullcontext() if enabled else train_model.no_sync():
            yield
        return
    if hasattr(train_model, "set_requires_gradient_sync"):  # FSDP
        train_model.set_requires_gradient_sync(enabled)
    yield


def scalar(value: Tensor) -> float:
    """A (possibly distributed) one-element tensor as a float; FSDP's gradient norm is a DTensor."""
    full = getattr(value, "full_tensor", None)
    return (full() if full is not None else value).item()


class FullShards:
    """The model's and the optimizer's full state gathered from FSDP shards, and scattered back.

    ``gather()`` gives a plain CPU copy of the model holding the full weights (for the same
    safetensors writer as an unsharded run); the object itself stands in for the optimizer in
    ``save_checkpoint`` and ``load_training_state`` (``state_dict``, ``load_state_dict``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, make_copy: Any):
        self.sharded, self.optimizer, self.make_copy = model, optimizer, make_copy
        self.optimizer_state: dict[str, Any] = {}

    def _options(self, **extra: Any):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(**{"full_state_dict": True, "cpu_offload": True, **extra})

    def gather(self) -> nn.Module | None:
        """Gather the full weights and optimizer state (a collective: every rank calls it); returns
        the full model on rank 0, None on the others. ``state_dict`` then gives the optimizer's."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        weights = get_model_state_dict(self.sharded, options=self._options())
        self.optimizer_state = get_optimizer_state_dict(self.sharded, self.optimizer, options=self._options())
        if not weights:
            return None
        copy = self.make_copy()
        copy.load_state_dict(weights)
        return copy

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer_state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.sharded, self.optimizer, state, options=self._options(cpu_offload=False))
