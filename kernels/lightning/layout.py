"""The memory layout the Triton lightning kernels accept, checked once for both of them."""

from __future__ import annotations

import torch


def check_layout(
    op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, states: torch.Tensor
) -> None:
    """q, k, v [..., H, D] with D_k == D_v and a contiguous last dimension (other strides are
    free, so views of a fused projection pass); each state [D, D] contiguous."""
    D = q.shape[-1]
    if v.shape[-1] != D or k.shape[-1] != D:
        raise ValueError(f"{op} expects D_k == D_v")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("q, k, v need a contiguous last dimension")
    if states.stride(-1) != 1 or states.stride(-2) != D:
        raise ValueError("each state [D, D] must be contiguous")
