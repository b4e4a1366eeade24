"""Helpers shared by the kernel tests and benchmarks: M1's slopes, random inputs, errors."""

from __future__ import annotations

import math

import torch


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's per-head slopes (power-of-two head counts exactly, others interpolated)."""

    def pow2(n: int) -> list[float]:
        r = 2.0 ** (-8.0 / n)
        return [r ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return pow2(num_heads)
    base = 2 ** math.floor(math.log2(num_heads))
    return pow2(base) + pow2(2 * base)[0::2][: num_heads - base]


def layer_slopes(
    num_heads: int, layer_idx: int, num_layers: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """M1's per-layer slopes: ALiBi's, scaled by (1 - layer_idx / (num_layers - 1) + 1e-5)."""
    scale = 1.0 + 1e-5 if num_layers <= 1 else 1.0 - layer_idx / (num_layers - 1) + 1e-5
    return torch.tensor(alibi_slopes(num_heads), dtype=torch.float32, device=device) * scale


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
