"""Chunked lightning attention in plain torch: the CPU backend.

The sequence is cut into blocks of C rows. Inside a block the causal part is a masked matmul with
the decay matrix lam^(i-j) (j <= i); the part from earlier blocks is (q_r lam^(r+1)) S_prev; the
state moves on as S <- lam^m S + (K * lam^(m-1-r))^T V. Every exponent is >= 0, so nothing
overflows at any length (the lam^(-r) trick would).

To keep Python overhead low on small models, a group of G blocks is handled with batched matmuls
(intra-block outputs, per-block state increments, inter-block outputs) and only the cheap state
recurrence S_{b+1} = lam^C S_b + U_b runs as a Python loop over blocks. G is picked so that the
per-group state buffers stay around 32 MB.
"""

from __future__ import annotations

import torch

BLOCK = 64
_GROUP_BYTES = 32 * 2**20


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _block_decays(log_lam: torch.Tensor, m: int) -> tuple[torch.Tensor, ...]:
    """Decay factors for a block of m rows; log_lam is [H] (= -slopes)."""
    r = torch.arange(m, dtype=log_lam.dtype, device=log_lam.device)
    q_dec = torch.exp(log_lam[:, None] * (r + 1))  # [H, m]  lam^(r+1)
    k_dec = torch.exp(log_lam[:, None] * (m - 1 - r))  # [H, m]  lam^(m-1-r)
    diff = r[:, None] - r[None, :]
    causal = diff >= 0
    mask = torch.exp(log_lam[:, None, None] * diff.clamp(min=0)) * causal  # [H, m, m]
    # 1 - lam^m, exact also for tiny slopes: a rounded lam^m applied once per block would bias
    # long, slowly decaying sequences (S <- S - eps * S instead of S <- lam^m * S).
    eps = (-torch.expm1(log_lam * m))[:, None, None]  # [H, 1, 1]
    return q_dec, k_dec, mask, eps


def chunked_sequence(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    state: torch.Tensor | None,
    block: int = BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence: q, k [T, H, Dk], v [T, H, Dv]; state [H, Dk, Dv] or None (zero).

    Returns (out [T, H, Dv], final state [H, Dk, Dv]), both in the compute dtype (float64 when
    any input is float64, else float32).
    """
    dtype = _compute_dtype(q, *(() if state is None else (state,)))
    T, H, Dk = q.shape
    Dv = v.shape[-1]
    qh = q.to(dtype).transpose(0, 1)  # [H, T, Dk]
    kh = k.to(dtype).transpose(0, 1)
    vh = v.to(dtype).transpose(0, 1)
    s = (
        torch.zeros(H, Dk, Dv, dtype=dtype, device=q.device)
        if state is None
        else state.to(dtype).clone()
    )
    out = torch.empty(H, T, Dv, dtype=dtype, device=q.device)
    log_lam = -slopes.to(device=q.device, dtype=dtype)

    C = block
    n_full = T // C
    if n_full:
        q_dec, k_dec, mask, eps = _block_decays(log_lam, C)
        per_block = H * Dk * Dv * torch.finfo(dtype).bits // 8
        group = max(1, min(n_full, _GROUP_BYTES // per_block))
        for g0 in range(0, n_full, group):
            g = min(group, n_full - g0)
            lo, hi = g0 * C, (g0 + g) * C
            qb = qh[:, lo:hi].reshape(H, g, C, Dk)
            kb = kh[:, lo:hi].reshape(H, g, C, Dk)
            vb = vh[:, lo:hi].reshape(H, g, C, Dv)
            o = (qb @ kb.transpose(-1, -2) * mask[:, None]) @ vb
            inc = (kb * k_dec[:, None, :, None]).transpose(-1, -2) @ vb  # [H, g, Dk, Dv]
            before = torch.empty_like(inc)
            for j in range(g):
                before[:, j] = s
                s = torch.addcmul(inc[:, j], eps, s, value=-1).add_(s)
            o += (qb * q_dec[:, None, :, None]) @ before
            out[:, lo:hi] = o.reshape(H, g * C, Dv)

    m = T - n_full * C
    if m:
        lo = n_full * C
        q_dec, k_dec, mask, eps = _block_decays(log_lam, m)
        qb, kb, vb = qh[:, lo:], kh[:, lo:], vh[:, lo:]
        o = (qb @ kb.transpose(-1, -2) * mask) @ vb + (qb * q_dec[..., None]) @ s
        s = torch.addcmul((kb * k_dec[..., None]).transpose(-1, -2) @ vb, eps, s, value=-1).add_(s)
        out[:, lo:] = o
    return out.transpose(0, 1), s


def chunked_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
    cu_seqlens: torch.Tensor,
    fresh: torch.Tensor,
    block: int = BLOCK,
) -> torch.Tensor:
    """Packed prefill; the contract is `kernels.lightning_prefill`'s."""
    out = torch.empty(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype, device=q.device)
    bounds = cu_seqlens.tolist()
    for b, (slot, is_fresh) in enumerate(zip(slots.tolist(), fresh.tolist(), strict=True)):
        lo, hi = bounds[b], bounds[b + 1]
        init = None if is_fresh else states[slot]
        o, final = chunked_sequence(q[lo:hi], k[lo:hi], v[lo:hi], slopes, init, block)
        if hi > lo:
            out[lo:hi] = o
        states[slot] = final
    return out


def chunked_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """One token per sequence; the contract is `kernels.lightning_decode`'s.

    This runs once per lightning layer per generated token, so it is written as a handful of
    batched ops over all (sequence, head) pairs: on the CPU each extra op costs ~10 us.
    """
    dtype = _compute_dtype(q, states)
    n, h, dk = q.shape
    dv = v.shape[2]
    valid = slots >= 0
    if bool(valid.all()):
        rows = None  # the common case: no padding rows, no index shuffling
        idx = slots.long()
    else:
        rows = torch.nonzero(valid).flatten()
        if rows.numel() == 0:
            return torch.zeros(n, h, dv, dtype=q.dtype, device=q.device)
        idx = slots[rows].long()
        q, k, v = q[rows], k[rows], v[rows]
    m = idx.numel()
    # S <- S - (1 - lam) S + k^T v with 1 - lam from expm1: for the deepest layers lam itself
    # rounds to 1 (or far from it) in float32, 1 - lam does not (see _block_decays).
    eps = (-torch.expm1(-slopes.to(device=q.device, dtype=dtype))).view(1, h, 1, 1)
    s = states[idx].to(dtype)
    s = s.addcmul_(s, eps, value=-1).view(m * h, dk, dv)
    s.baddbmm_(k.to(dtype).reshape(m * h, dk, 1), v.to(dtype).reshape(m * h, 1, dv))
    o = torch.bmm(q.to(dtype).reshape(m * h, 1, dk), s).view(m, h, dv)
    states[idx] = s.view(m, h, dk, dv).to(states.dtype)
    if rows is None:
        return o.to(q.dtype)
    out = torch.zeros(n, h, dv, dtype=q.dtype, device=q.device)
    out[rows] = o.to(q.dtype)
    return out
