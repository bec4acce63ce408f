"""Log-likelihood of continuations given contexts, batched, in windows of a model's context.

A pair is (context tokens, continuation tokens); the context starts with the model's
beginning-of-text token, so the first continuation token has something to be predicted from.
A sequence longer than the window is read in consecutive windows (every continuation token is
predicted once; the first window keeps as much context as fits, later ones the tokens before
them), as lm-eval-harness reads long documents. Windows are sorted by length and batched, right-
padded (a causal model's real positions never see the padding), within a budget of logits.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LOGITS_BUDGET = 1 << 26  # float32 logits values one batch may hold (256 MB)


def windows(ids: Sequence[int], start: int, max_len: int) -> list[tuple[list[int], int]]:
    """(tokens of at most ``max_len + 1``, how many of its last tokens are scored) that together
    score every token from ``start`` on exactly once; ``start`` >= 1."""
    out, a = [], start
    while a < len(ids):
        b = min(len(ids), a + max_len)
        s = max(0, b - 1 - max_len)
        out.append((list(ids[s:b]), b - a))
        a = b
    return out


@torch.no_grad()
def continuation_nll(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], logits: Callable[[Tensor, Tensor], Tensor],
                     *, max_len: int, vocab_size: int, device: torch.device | str, pad_id: int = 0,
                     max_batch: int = 64) -> list[float]:
    """The summed negative log-likelihood (nats) of each continuation given its context.

    ``logits(tokens, mask)`` maps right-padded (B, T) token ids and their (B, T) mask to (B, T, V)
    logits."""
    items: list[tuple[int, list[int], int]] = []  # (pair, window tokens, scored)
    for index, (context, continuation) in enumerate(pairs):
        if not context:
            raise ValueError("a context needs at least one token (the beginning-of-text token)")
        ids = [*context, *continuation]
        items += [(index, toks, n) for toks, n in windows(ids, len(context), max_len)]
    totals = [0.0] * len(pairs)
    order = sorted(range(len(items)), key=lambda i: -len(items[i][1]))
    budget_tokens = max(max_len, LOGITS_BUDGET // max(1, vocab_size))
    at = 0
    while at < len(order):
        width = len(items[order[at]][1]) - 1
        rows = max(1, min(max_batch, budget_tokens // max(1, width)))
        batch = [items[i] for i in order[at : at + rows]]
        at += rows
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, toks, _) in enumerate(batch):
            tokens[row, : len(toks) - 1] = torch.tensor(toks[:-1])
            mask[row, : len(toks) - 1] = 1
        out = logits(tokens.to(device), mask.to(device))
        for row, (index, toks, n) in enumerate(batch):
            end = len(toks) - 1
            target = torch.tensor(toks[end - n + 1 :], device=out.device)
            totals[index] += F.cross_entropy(out[row, end - n : end].float(), target, reduction="sum").item()
    return totals
