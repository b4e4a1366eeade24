"""Helpers shared by the kernel tests and benchmarks: M1's slopes, random inputs, errors."""

from __future__ import annotations

import math

import torch

from m1_kernels.lightning.slopes import lightning_slopes


def layer_slopes(
    num_heads: int, layer_idx: int, num_layers: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """M1's slopes for one layer as a float32 tensor (see `kernels.lightning.slopes`)."""
    return torch.tensor(
        lightning_slopes(num_heads, layer_idx, num_layers), dtype=torch.float32, device=device
    )


def random_qkv(
    T: int,
    H: int,
    D: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
    scale: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v as the model makes them: silu of a [T, H, 3D] projection, split per head.

    The three tensors are non-contiguous views (stride (3HD, 3D, 1)), as in the model layer.
    """
    x = torch.randn(T, H, 3 * D, generator=generator, dtype=torch.float32)
    qkv = (torch.nn.functional.silu(x) * scale).to(device=device, dtype=dtype)
    return qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]


def random_states(
    num_slots: int,
    H: int,
    D: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Plausible carried states (a few tokens' worth of k^T v, values ~0.05)."""
    s = torch.randn(num_slots, H, D, D, generator=generator, dtype=torch.float32) * 0.05
    return s.to(device=device, dtype=dtype)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64, on out's device (inf when out holds NaN or inf)."""
    o = out.detach().to(torch.float64)
    r = ref.detach().to(device=o.device, dtype=torch.float64)
    if not torch.isfinite(o).all():
        return math.inf
    return float((o - r).norm() / r.norm().clamp_min(1e-300))
