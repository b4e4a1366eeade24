"""Triton prefill for lightning attention: packed variable-length sequences, slot-indexed state.

One program owns one (sequence, head, slice of D_v) and walks its sequence block by block with
the running state slice S[:, v0:v0+BV] held in registers, so q, k and v are read once and the
state touches device memory only at the start and the end. Per block of C rows (r = 0..m-1):

    o     = ((q k^T) * lam^(i-j) [j <= i]) v  +  (q * lam^(r+1)) S
    S     = lam^m S + (k * lam^(m-1-r))^T v

All decay exponents are >= 0, so nothing overflows at any length. The D_v split exists to fill
the GPU at batch 1 (H * D/BV programs); the q k^T product is recomputed per slice, but the slices
of one head run side by side so their q/k re-reads are served by L2.

On Hopper and later, full blocks of q, k, v arrive (and o leaves) through the tensor-memory
accelerator: bulk tile copies described once on the host, pipelined into shared memory without
holding registers or address arithmetic per thread (7% faster at 16K tokens than plain loads).
Other GPUs, odd strides and the last partial block of each sequence use plain masked loads.

Precision: float32 inputs use IEEE float32 dots throughout (exact to ~1e-6). bf16/fp16 inputs
use the tensor cores with float32 accumulation; the state is rounded to the input dtype only as
an operand of the q S product (the float32 state itself is never rounded).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from m1_kernels.lightning.configs import PrefillConfig, device_configs
from m1_kernels.lightning.layout import check_layout, rows_matrix
from m1_kernels.lightning.triton_math import expm1


@triton.jit
def _operand(x, OP: tl.constexpr, UPCAST: tl.constexpr):
    """Round float32 x to the dot operand dtype OP (round to nearest even, as the GPU does).

    Under the interpreter the result stays float32 (its bf16 dots are wrong, and its own
    float32 -> bf16 cast truncates), so bf16 rounding is done on the bits.
    """
    if UPCAST:
        if OP == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            y = bits.to(tl.float32, bitcast=True)
        else:
            y = x.to(OP).to(tl.float32)
    else:
        y = x.to(OP)
    return y


@triton.jit
def _load_block(ptrs, desc, row, col, n_rows, rc, MASKED: tl.constexpr, TMA: tl.constexpr):
    """Rows [row, row + C) of one head's q, k or v (or its D_v slice at col).

    Full blocks come through the tensor-memory accelerator when TMA is set (bulk copies into
    shared memory: no per-thread address arithmetic, no registers held by loads in flight);
    the masked tail block always uses plain loads, since its rows end inside the packed batch.
    """
    if MASKED:
        x = tl.load(ptrs, mask=(rc < n_rows)[:, None], other=0.0)
    elif TMA:
        x = desc.load([row.to(tl.int32), col])
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _block(
    q,
    k,
    v,
    state,
    q_dec,
    intra_dec,
    k_dec,
    blk_eps,
    EXACT: tl.constexpr,
    STATE_DOT_F32: tl.constexpr,
    OP: tl.constexpr,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
    EARLY: tl.constexpr,
):
    """One block of C rows: returns its outputs and the state after it.

    q and k go to the tensor cores untouched (straight from shared memory); the decays are
    applied to the rows of the q S product (lam^(r+1) is a per-row factor) and to the rows of v
    in the state update (K^T (lam^(m-1-r) * V) = (K * lam^(m-1-r))^T V, BV wide instead of D).
    The block decay enters as blk_eps = 1 - lam^m (S <- S - blk_eps * S): lam^m itself, rounded
    to float32 and applied to the state thousands of times, would bias long sequences with slow
    decay by ~1e-5. Rows past the end of a sequence arrive as zeros and contribute nothing.
    """
    if EXACT:
        scores = tl.dot(q, tl.trans(k), input_precision=PREC)
        o = tl.dot(scores * intra_dec, v, input_precision=PREC)
        o += q_dec[:, None] * tl.dot(q, state, input_precision=PREC)
        vd = v * k_dec[:, None]
        state = tl.dot(tl.trans(k), vd, state - state * blk_eps, input_precision=PREC)
    else:
        # OP is the input dtype. Under the interpreter (whose bf16 dots are wrong) the operands
        # travel as float32, rounded as OP would be: the same arithmetic.
        if UPCAST:
            q = q.to(tl.float32)
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        if STATE_DOT_F32:
            inter = tl.dot(q.to(tl.float32), state, input_precision="tf32")
        else:
            inter = tl.dot(q, _operand(state, OP, UPCAST))
        if EARLY:  # state update first: shortens the loop-carried chain
            vd = _operand(v.to(tl.float32) * k_dec[:, None], OP, UPCAST)
            state = tl.dot(tl.trans(k), vd, state - state * blk_eps)
        scores = tl.dot(q, tl.trans(k))
        o = tl.dot(_operand(scores * intra_dec, OP, UPCAST), v, q_dec[:, None] * inter)
        if not EARLY:
            vd = _operand(v.to(tl.float32) * k_dec[:, None], OP, UPCAST)
            state = tl.dot(tl.trans(k), vd, state - state * blk_eps)
    return o, state


@triton.jit
def _block_t(
    q,
    k,
    v,
    state_t,
    q_dec,
    intra_dec_t,
    k_dec,
    blk_eps,
    OP: tl.constexpr,
    UPCAST: tl.constexpr,
    STATE_DOT_F32: tl.constexpr,
):
    """`_block` for 16-bit inputs with the state kept transposed, S^T [BV, D], and the block's
    outputs computed transposed, o^T [BV, C]. Same arithmetic; what changes is where the dot
    operands live. Here the two operands built in registers (S^T and (lam^(m-1-r) v)^T) are
    the left-hand sides, which the tensor cores take straight from registers, and q, k, v are
    used from shared memory as they arrived. Only (scores * decay)^T has to be written back to
    shared memory, where `_block` writes S and the decayed v (16 + 8 KB per block, not 8).
    """
    if UPCAST:
        q = q.to(tl.float32)
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    if STATE_DOT_F32:  # fp16 inputs: a float16 state operand could overflow
        inter_t = tl.dot(state_t, tl.trans(q.to(tl.float32)), input_precision="tf32")
    else:
        inter_t = tl.dot(_operand(state_t, OP, UPCAST), tl.trans(q))
    vd_t = _operand(tl.trans(v).to(tl.float32) * k_dec[None, :], OP, UPCAST)
    state_t = tl.dot(vd_t, k, state_t - state_t * blk_eps)
    scores_t = tl.dot(k, tl.trans(q))  # [C, C]: row j (key), column i (query)
    p_t = _operand(scores_t * intra_dec_t, OP, UPCAST)
    o_t = tl.dot(tl.trans(v), p_t, inter_t * q_dec[None, :])
    return tl.trans(o_t), state_t


@triton.jit
def _step(
    q, k, v, state, q_dec, intra_dec, k_dec, blk_eps,
    EXACT: tl.constexpr, STATE_DOT_F32: tl.constexpr, OP: tl.constexpr, UPCAST: tl.constexpr,
    PREC: tl.constexpr, EARLY: tl.constexpr, STATE_T: tl.constexpr,
):  # fmt: skip
    """One block with the state as the kernel holds it: S^T (`_block_t`, 16-bit inputs) or S."""
    if STATE_T:
        o, state = _block_t(
            q, k, v, state, q_dec, intra_dec, k_dec, blk_eps, OP, UPCAST, STATE_DOT_F32
        )
    else:
        o, state = _block(
            q, k, v, state, q_dec, intra_dec, k_dec, blk_eps,
            EXACT, STATE_DOT_F32, OP, UPCAST, PREC, EARLY,
        )  # fmt: skip
    return o, state


@triton.jit
def _prefill_kernel(
    Q,
    K,
    V,
    OUT,
    QD,
    KD,
    VD,
    OD,
    STATES,
    SLOPES,
    SLOTS,
    CU,
    FRESH,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_sn,
    stride_sh,
    D: tl.constexpr,
    BV: tl.constexpr,
    C: tl.constexpr,
    EXACT: tl.constexpr,
    STATE_DOT_F32: tl.constexpr,
    OP: tl.constexpr,
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
    EARLY: tl.constexpr,
    TMA: tl.constexpr,
    STATE_T: tl.constexpr,
    TAIL_ONLY: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    iv = tl.program_id(2)

    lo = tl.load(CU + b).to(tl.int64)
    n = tl.load(CU + b + 1).to(tl.int64) - lo
    slot = tl.load(SLOTS + b).to(tl.int64)
    fresh = tl.load(FRESH + b) != 0
    log_lam = -tl.load(SLOPES + h).to(tl.float32)

    rk = tl.arange(0, D)
    rv = iv * BV + tl.arange(0, BV)
    rc = tl.arange(0, C)

    s_base = STATES + slot * stride_sn + h * stride_sh
    if STATE_T:  # S^T [BV, D]
        s_ptrs = s_base + rk[None, :] * D + rv[:, None]
        state = tl.zeros((BV, D), dtype=tl.float32)
    else:
        s_ptrs = s_base + rk[:, None] * D + rv[None, :]
        state = tl.zeros((D, BV), dtype=tl.float32)
    n_full = n // C
    rem = n - n_full * C
    if TAIL_ONLY:  # the full blocks are done (gluon_prefill.py): carry on from the slot
        state = tl.load(s_ptrs, mask=rem > 0, other=0.0).to(tl.float32)
    elif not fresh:
        state = tl.load(s_ptrs).to(tl.float32)

    # Decays of a full block of C rows (all exponents >= 0).
    rcf = rc.to(tl.float32)
    q_dec = tl.exp(log_lam * (rcf + 1.0))
    if STATE_T:  # transposed: [key j, query i]
        diff = rcf[None, :] - rcf[:, None]
    else:
        diff = rcf[:, None] - rcf[None, :]
    intra_dec = tl.where(diff >= 0, tl.exp(log_lam * tl.maximum(diff, 0.0)), 0.0)
    k_dec = tl.exp(log_lam * (C - 1.0 - rcf))
    blk_eps = -expm1(log_lam * C)

    # Pointers of the block's rows (plain loads), and the head's first column in the row-major
    # [T, row stride] matrices the descriptors describe (TMA).
    q_ptrs = Q + h * stride_qh + (lo + rc)[:, None] * stride_qt + rk[None, :]
    k_ptrs = K + h * stride_kh + (lo + rc)[:, None] * stride_kt + rk[None, :]
    v_ptrs = V + h * stride_vh + (lo + rc)[:, None] * stride_vt + rv[None, :]
    o_ptrs = OUT + h * stride_oh + (lo + rc)[:, None] * stride_ot + rv[None, :]
    q_col = (h * stride_qh).to(tl.int32)
    k_col = (h * stride_kh).to(tl.int32)
    v_col = (h * stride_vh + iv * BV).to(tl.int32)
    o_col = (h * stride_oh + iv * BV).to(tl.int32)
    # Unrolled x2 the loop was slower: 4 stages no longer fit shared memory (docs/kernels.md).
    for i in tl.range(n_full if TAIL_ONLY else 0, n_full, loop_unroll_factor=1):
        start = i * C
        row = lo + start
        q = _load_block(q_ptrs + start * stride_qt, QD, row, q_col, C, rc, False, TMA)
        k = _load_block(k_ptrs + start * stride_kt, KD, row, k_col, C, rc, False, TMA)
        v = _load_block(v_ptrs + start * stride_vt, VD, row, v_col, C, rc, False, TMA)
        o, state = _step(
            q, k, v, state, q_dec, intra_dec, k_dec, blk_eps,
            EXACT, STATE_DOT_F32, OP, UPCAST, PREC, EARLY, STATE_T,
        )  # fmt: skip
        if TMA:
            OD.store([row.to(tl.int32), o_col], o.to(OD.dtype))
        else:
            tl.store(o_ptrs + start * stride_ot, o.to(o_ptrs.dtype.element_ty))

    if rem > 0:  # the last, partial block: its k decay and block decay depend on its length
        start = n_full * C
        row = lo + start
        m = rem.to(tl.float32)
        k_dec_t = tl.where(rc < rem, tl.exp(log_lam * tl.maximum(m - 1.0 - rcf, 0.0)), 0.0)
        q = _load_block(q_ptrs + start * stride_qt, QD, row, q_col, rem, rc, True, TMA)
        k = _load_block(k_ptrs + start * stride_kt, KD, row, k_col, rem, rc, True, TMA)
        v = _load_block(v_ptrs + start * stride_vt, VD, row, v_col, rem, rc, True, TMA)
        o, state = _step(
            q, k, v, state, q_dec, intra_dec, k_dec_t, -expm1(log_lam * m),
            EXACT, STATE_DOT_F32, OP, UPCAST, PREC, EARLY, STATE_T,
        )  # fmt: skip
        tl.store(
            o_ptrs + start * stride_ot, o.to(o_ptrs.dtype.element_ty), mask=(rc < rem)[:, None]
        )

    if TAIL_ONLY:
        tl.store(s_ptrs, state.to(STATES.dtype.element_ty), mask=rem > 0)
    else:
        tl.store(s_ptrs, state.to(STATES.dtype.element_ty))


_TL_DTYPE = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def default_prefill_config(q: torch.Tensor, num_sequences: int) -> PrefillConfig:
    """The measured launch configuration for these inputs (tuned/configs.json; shapes only:
    no host sync). Many short 16-bit sequences on a GPU take the one-program-per-head one."""
    T, H, _ = q.shape
    sm_count = _sm_count(q.device) if q.is_cuda else None
    return device_configs(q.device).prefill_for(q.dtype, T, num_sequences, H, sm_count)


@functools.cache
def _major(device: torch.device) -> int:
    """Compute capability major; asked once per device, not per layer call."""
    return torch.cuda.get_device_capability(device)[0]


def _has_tma(device: torch.device) -> bool:
    """Hopper (compute capability 9) and later."""
    return _major(device) >= 9


def _tma_ok(x: torch.Tensor) -> bool:
    """Whether the TMA unit can move tiles of x [T, H, D]: a GPU that has it (or the
    interpreter), a 16-byte aligned base and row stride, heads in order along a row, and a head
    no wider than a TMA box (256 elements)."""
    return (
        ((x.is_cuda and _has_tma(x.device)) or _interpreting())
        and x.shape[0] > 0
        and x.stride(1) >= x.shape[2]
        and x.shape[2] <= 256
        and x.data_ptr() % 16 == 0
        and (x.stride(0) * x.element_size()) % 16 == 0
    )


def _gluon_usable(q: torch.Tensor) -> bool:
    """Whether the warp-specialised Gluon kernel (Hopper only, bf16 inputs) can take q."""
    return (
        q.is_cuda
        and q.dtype == torch.bfloat16
        and q.shape[2] in (64, 128)
        and _major(q.device) == 9
    )


def _rows_descriptor(x: torch.Tensor, rows: int, cols: int) -> TensorDescriptor:
    """x [T, H, D] as its rows matrix (`layout.rows_matrix`), moved in tiles of rows x cols."""
    return TensorDescriptor(x, *rows_matrix(x), [rows, cols])


def triton_prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    states: torch.Tensor,
    slots: torch.Tensor,
    cu_seqlens: torch.Tensor,
    fresh: torch.Tensor,
    config: PrefillConfig | None = None,
) -> torch.Tensor:
    """`kernels.lightning_prefill` on CUDA (or on CPU under TRITON_INTERPRET=1); config replaces
    the measured launch configuration (tests and the tuner).

    No host synchronisation: the grid comes from shapes alone (sequence count x heads x D_v
    slices), so it is safe to capture in a CUDA graph.
    """
    check_layout("lightning_prefill", q, k, v, states)
    T, H, D = q.shape
    B = cu_seqlens.shape[0] - 1
    cfg = config or default_prefill_config(q, B)
    BV = min(cfg.v_slice, D)
    out = torch.empty(T, H, D, dtype=q.dtype, device=q.device)
    if B == 0:
        return out
    fresh_u8 = fresh.view(torch.uint8) if fresh.dtype == torch.bool else fresh
    tma = cfg.tma and all(map(_tma_ok, (q, k, v)))
    gluon = cfg.gluon is not None and tma and T >= cfg.gluon.min_tokens and _gluon_usable(q)
    if gluon and cfg.gluon is not None:  # full blocks in the Gluon kernel, the tails below
        from m1_kernels.lightning.gluon_prefill import gluon_prefill_full_blocks

        gluon_prefill_full_blocks(
            q,
            k,
            v,
            out,
            slopes,
            states,
            slots,
            cu_seqlens,
            fresh_u8,
            cfg.block_rows,
            cfg.gluon,
        )
        tma = False  # tails use masked loads: no descriptors to encode for the launch below
    descs = (
        [_rows_descriptor(x, cfg.block_rows, w) for x, w in ((q, D), (k, D), (v, BV), (out, BV))]
        if tma
        else [None] * 4
    )
    grid = (B, H, triton.cdiv(D, BV))
    _prefill_kernel[grid](
        q,
        k,
        v,
        out,
        *descs,
        states,
        slopes,
        slots,
        cu_seqlens,
        fresh_u8,
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
        C=cfg.block_rows,
        EXACT=q.dtype in (torch.float32, torch.float64),
        STATE_DOT_F32=q.dtype == torch.float16,
        OP=_TL_DTYPE.get(q.dtype, tl.float32),
        UPCAST=_interpreting(),
        PREC=cfg.dot_precision,
        EARLY=cfg.state_update_first,
        TMA=tma,
        STATE_T=cfg.state_transposed and q.dtype in (torch.bfloat16, torch.float16),
        TAIL_ONLY=gluon,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out
