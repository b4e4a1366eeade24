"""The memory layout the GPU lightning kernels accept, checked once for all of them."""

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


def rows_matrix(x: torch.Tensor) -> tuple[list[int], list[int]]:
    """Shape and strides of the row-major matrix the rows of x [T, H, D] live in,
    [T, (H - 1) * stride_h + D]: head h starts at column h * stride_h, so q, k, v as views of one
    fused projection qualify. TMA descriptors of both kernels are built over it."""
    T, H, D = x.shape
    return [T, (H - 1) * x.stride(1) + D], [x.stride(0), 1]
