"""Triton decode for lightning attention: one token per sequence, slot-indexed float32 state.

One program owns one (row, head, slice of D_v): it reads the state slice S[:, v0:v0+BV] once,
applies S = lam S + k^T v, writes it back and emits o = q S. The work is pure state traffic
(read + write of H * D * D float32 per sequence), so the only goals are coalesced, wide accesses
and enough programs in flight. Rows whose slot is negative are padding: their output is zeroed
and no state is touched. No host synchronisation, fixed grid: safe inside CUDA graphs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from m1_kernels.lightning.configs import DecodeConfig, device_configs
from m1_kernels.lightning.layout import check_layout
from m1_kernels.lightning.triton_math import expm1


@triton.jit
def _decode_kernel(
    Q,
    K,
    V,
    OUT,
    STATES,
    SLOPES,
    SLOTS,
    stride_qb,
    stride_qh,
    stride_kb,
    stride_kh,
    stride_vb,
    stride_vh,
    stride_ob,
    stride_oh,
    stride_sn,
    stride_sh,
    D: tl.constexpr,
    BV: tl.constexpr,
    STORE: tl.constexpr,
    HEADS_FIRST: tl.constexpr,
):
    # HEADS_FIRST: neighbouring programs take neighbouring heads of one row, whose states are
    # adjacent in memory, so the programs in flight stream through few DRAM pages.
    if HEADS_FIRST:
        h = tl.program_id(0)
        b = tl.program_id(1)
    else:
        b = tl.program_id(0)
        h = tl.program_id(1)
    iv = tl.program_id(2)
    rk = tl.arange(0, D)
    rv = iv * BV + tl.arange(0, BV)
    o_ptrs = OUT + b * stride_ob + h * stride_oh + rv

    slot = tl.load(SLOTS + b).to(tl.int64)
    if slot < 0:
        tl.store(o_ptrs, tl.zeros((BV,), dtype=OUT.dtype.element_ty))
    else:
        x = -tl.load(SLOPES + h).to(tl.float32)
        # S <- S - (1 - lam) S: 1 - lam is exact to float32 rounding even for tiny slopes, where
        # a rounded lam applied once per generated token would drift over long generations.
        eps = -expm1(x)
        s_ptrs = STATES + slot * stride_sn + h * stride_sh + rk[:, None] * D + rv[None, :]
        state = tl.load(s_ptrs).to(tl.float32)
        q = tl.load(Q + b * stride_qb + h * stride_qh + rk).to(tl.float32)
        k = tl.load(K + b * stride_kb + h * stride_kh + rk).to(tl.float32)
        v = tl.load(V + b * stride_vb + h * stride_vh + rv).to(tl.float32)
        state = state - state * eps + k[:, None] * v[None, :]
        tl.store(s_ptrs, state.to(STATES.dtype.element_ty), cache_modifier=STORE)
        o = tl.sum(q[:, None] * state, axis=0)
        tl.store(o_ptrs, o.to(OUT.dtype.element_ty))


def default_decode_config(q: torch.Tensor) -> DecodeConfig:
    """The measured configuration for q's device and row count (tuned/configs.json): few rows
    want many small programs (latency), many rows wide programs (bandwidth)."""
    return device_configs(q.device).decode_for(q.shape[0])


def triton_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
    config: DecodeConfig | None = None,
) -> torch.Tensor:
    """`kernels.lightning_decode` on CUDA (or on CPU under TRITON_INTERPRET=1); config replaces
    the measured launch configuration (tests and the tuner)."""
    check_layout("lightning_decode", q, k, v, states)
    B, H, D = q.shape
    cfg = config or default_decode_config(q)
    BV = min(cfg.v_slice, D)
    out = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    if B == 0:
        return out
    heads_first = cfg.heads_first
    grid = (H, B, triton.cdiv(D, BV)) if heads_first else (B, H, triton.cdiv(D, BV))
    _decode_kernel[grid](
        q,
        k,
        v,
        out,
        states,
        slopes,
        slots,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        states.stride(0),
        states.stride(1),
        D=D,
        BV=BV,
        STORE=cfg.state_store,
        HEADS_FIRST=heads_first,
        num_warps=cfg.num_warps,
    )
    return out
