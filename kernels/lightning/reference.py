"""Exact token-by-token lightning (linear) attention: the definition every backend must match.

Per head h with decay lam = exp(-slopes[h]) and a D_k x D_v state S:

    S_t = lam * S_{t-1} + k_t^T v_t
    o_t = q_t S_t                      (the current token counts; no scaling, no normalisation)

These functions are slow on purpose: one token at a time, in the precision of their inputs
(callers pass float64 tensors to get the ground truth).
"""

from __future__ import annotations

import torch


def recurrence(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence: q, k [T, H, Dk], v [T, H, Dv], state [H, Dk, Dv] or None (zero).

    Returns (out [T, H, Dv], final state [H, Dk, Dv]) in the promoted dtype of the inputs.
    """
    dtype = torch.promote_types(q.dtype, state.dtype if state is not None else torch.float32)
    T, H, Dk = q.shape
    Dv = v.shape[-1]
    lam = torch.exp(-slopes.to(dtype)).view(H, 1, 1)
    s = (
        torch.zeros(H, Dk, Dv, dtype=dtype, device=q.device)
        if state is None
        else state.to(dtype).clone()
    )
    out = torch.empty(T, H, Dv, dtype=dtype, device=q.device)
    for t in range(T):
        qt, kt, vt = q[t].to(dtype), k[t].to(dtype), v[t].to(dtype)
        s = lam * s + kt.unsqueeze(-1) * vt.unsqueeze(-2)
        out[t] = torch.einsum("hk,hkv->hv", qt, s)
    return out, s


def reference_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
    cu_seqlens: torch.Tensor,
    fresh: torch.Tensor,
) -> torch.Tensor:
    """Packed variable-length prefill with the same contract as `kernels.lightning_prefill`.

    Sequence b covers tokens cu_seqlens[b]:cu_seqlens[b+1]; it starts from states[slots[b]]
    (zero if fresh[b]) and writes its final state back there. Computes in the promoted dtype of
    q and states; returns out in q's dtype.
    """
    out = torch.empty(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype, device=q.device)
    bounds = cu_seqlens.tolist()
    for b, slot in enumerate(slots.tolist()):
        lo, hi = bounds[b], bounds[b + 1]
        init = None if bool(fresh[b]) else states[slot]
        o, final = recurrence(q[lo:hi].to(states.dtype), k[lo:hi], v[lo:hi], slopes, init)
        out[lo:hi] = o.to(q.dtype)
        states[slot] = final.to(states.dtype)
    return out


def reference_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """One token per sequence, [B, H, D]; rows with slots[b] < 0 are padding (zero output)."""
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype, device=q.device)
    for b, slot in enumerate(slots.tolist()):
        if slot < 0:
            continue
        o, final = recurrence(
            q[b : b + 1].to(states.dtype), k[b : b + 1], v[b : b + 1], slopes, states[slot]
        )
        out[b] = o[0].to(q.dtype)
        states[slot] = final.to(states.dtype)
    return out
