"""Cross-entropy of the output head computed in chunks of tokens: never the full (N, vocab) logits.

The plain loss materialises float32 logits for every token and keeps them, and their gradient,
for the backward pass: ``B * T * vocab * 4`` bytes twice, about 20 GB at sigma-1.5b's shape
(vocab 128,256) with 8 x 2048 tokens. Here each chunk's logits are built, turned into the
chunk's loss and its gradients with respect to the hidden states and the head's weight, and
freed before the next chunk; the backward pass only scales the stored gradients (the fused
linear cross-entropy of Liger-Kernel, Hsu et al. 2024, in plain torch). Peak extra memory is one
chunk's logits plus a float32 gradient of the head's weight; no matmul is recomputed.

The loss and both gradients equal ``F.cross_entropy(hidden @ weight.T, targets)`` to float32
rounding; targets < 0 are ignored, as there.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int, dtype: torch.dtype, grads: bool):
        count = (targets >= 0).sum().clamp(min=1)
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if grads else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if grads else None
        for start in range(0, hidden.size(0), chunk):
            h = hidden[start : start + chunk].to(dtype)
            t = targets[start : start + chunk]
            keep = (t >= 0).float()
            picked = t.clamp(min=0).unsqueeze(1)
            logits = (h @ w.T).float()  # (chunk, vocab)
            lse = logits.logsumexp(-1)
            total += ((lse - logits.gather(1, picked).squeeze(1)) * keep).sum()
            if grads:  # d loss / d logits = (softmax - onehot) / count, in place of the logits
                g = logits.sub_(lse.unsqueeze(1)).exp_()
                g.scatter_add_(1, picked, torch.full_like(keep, -1.0).unsqueeze(1))
                g = (g * (keep / count).unsqueeze(1)).to(dtype)
                grad_hidden[start : start + chunk] = (g @ w).to(hidden.dtype)
                grad_weight += (g.T @ h).float()
        if grads:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total / count

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None, None


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
    """Mean cross-entropy of ``hidden (N, d) @ weight.T (vocab, d)`` against ``targets (N,)``, ``chunk``
    tokens at a time. Under autocast the products run in the autocast dtype, as ``nn.Linear`` would."""
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of tokens, not {chunk}")
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, dtype, grads)
