"""MiniMax-M1 lightning (linear) attention: one contract, three backends.

- `reference`: the exact token-by-token recurrence (defines the semantics; slow).
- `torch_chunked`: blocked torch implementation, used for CPU tensors.
- `triton_prefill` / `triton_decode`: Triton kernels, used for CUDA tensors (prefill hands the
  full blocks of long bf16 inputs on Hopper to the Gluon kernel in `gluon_prefill`).

`lightning_prefill` and `lightning_decode` pick the backend from the tensors' device and dtypes.
"""

from __future__ import annotations

import torch

from m1_kernels.lightning.reference import recurrence, reference_decode, reference_prefill
from m1_kernels.lightning.torch_chunked import chunked_decode, chunked_prefill


def _triton_ok(q: torch.Tensor, states: torch.Tensor) -> bool:
    """CUDA tensors with a float32 state take the Triton kernels, except float64 inputs (the
    chunked torch code runs on any device and is the float64 path, and the path for any other
    state dtype; the model's state cache is float32)."""
    return q.is_cuda and q.dtype != torch.float64 and states.dtype == torch.float32


def lightning_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
    cu_seqlens: torch.Tensor,
    fresh: torch.Tensor,
) -> torch.Tensor:
    """Packed variable-length prefill of B sequences.

    q, k, v: [T, H, D] (last dim contiguous; other strides free); slopes: [H] float32 (decay
    exp(-slopes)); states: [num_slots, H, D, D] float32, updated in place: sequence b starts from
    states[slots[b]] (zero if fresh[b]) and writes its final state back there; cu_seqlens: [B+1]
    token offsets. Returns out [T, H, D] in q's dtype.
    """
    if _triton_ok(q, states):
        from m1_kernels.lightning.triton_prefill import triton_prefill

        return triton_prefill(q, k, v, slopes, states, slots, cu_seqlens, fresh)
    return chunked_prefill(q, k, v, slopes, states, slots, cu_seqlens, fresh)


def lightning_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """One token per sequence: q, k, v [B, H, D]; states[slots[b]] updated in place.

    Rows with slots[b] < 0 are padding: their state is untouched and their output is zero.
    Returns [B, H, D] in q's dtype.
    """
    if _triton_ok(q, states):
        from m1_kernels.lightning.triton_decode import triton_decode

        return triton_decode(q, k, v, slopes, states, slots)
    return chunked_decode(q, k, v, slopes, states, slots)


__all__ = [
    "chunked_decode",
    "chunked_prefill",
    "lightning_decode",
    "lightning_prefill",
    "recurrence",
    "reference_decode",
    "reference_prefill",
]
