"""A device-to-device copy on the SMs, in Triton: the copy-bandwidth reference a decode kernel is
held against (a CUDA graph's memcpy node may run on a copy engine instead, slower than the SMs).
Each program moves ``BLOCK`` elements, 16-byte accesses per thread."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _copy_kernel(src, dst, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(dst + offsets, tl.load(src + offsets, mask=mask), mask=mask)


def triton_copy(src: torch.Tensor, dst: torch.Tensor, block: int = 8192) -> torch.Tensor:
    if not (src.is_contiguous() and dst.is_contiguous() and src.shape == dst.shape and src.dtype == dst.dtype):
        raise ValueError("triton_copy needs two contiguous tensors of one shape and dtype")
    n = src.numel()
    _copy_kernel[(triton.cdiv(n, block),)](src, dst, n, BLOCK=block, num_warps=8)
    return dst
