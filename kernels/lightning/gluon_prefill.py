"""Warp-specialised prefill for Hopper (Gluon): the full blocks of each sequence.

The Triton kernel (`triton_prefill.py`) runs one warpgroup per (sequence, head, D_v slice) and
issues every load wait, tensor-core product and elementwise step of a block in order, so the
tensor cores and the memory system take turns. Here the same program is split by job into
three partitions that run side by side on one SM, handing blocks over through shared memory:

    loader (1 warp)     TMA: q, k, v blocks into a ring of NS stages
    state  (4 warps)    holds S^T [BV, D] in registers (the only serial chain):
                            X^T = (S^T q^T) * lam^(r+1)      -> shared memory
                            S^T = S^T - eps S^T + (lam^(m-1-r) v)^T k
    intra  (4 warps)    o = ((q k^T) * lam^(i-j) [j <= i]) v + X, stored through TMA

The state partition's two products take their left operands (S^T and the decayed v^T) from
registers, so nothing it computes is written back to shared memory except X. While it works
on block i, the intra partition works on block i or i-1 and the loader fetches i+1..i+NS-1.

Only full blocks of C rows are done here; `triton_prefill` then launches its own kernel with
TAIL_ONLY set for the last, partial block of each sequence, starting from the state this kernel
leaves in the slot. Arithmetic, decays and rounding points match the Triton kernel's 16-bit path
with the state transposed (`_block_t`), so the two differ only in float32 summation order.
"""

from __future__ import annotations

import functools

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from m1_kernels.lightning.configs import GluonConfig
from m1_kernels.lightning.layout import rows_matrix


@gluon.jit
def _hand_over_x(x_t, x_bufs, x_ready, x_empty, i, NX: gl.constexpr):
    """Write block i's X^T into hand-over buffer i % NX (as X [C, BV]) once it is free."""
    x = i % NX
    mbarrier.wait(x_empty.index(x), ((i // NX) & 1) ^ 1)
    x_bufs.index(x).store(gl.permute(x_t, [1, 0]))
    mbarrier.arrive(x_ready.index(x), count=1)


@gluon.jit
def _state_partition(
    STATES, s_off, fresh, log_lam, blk_eps, n_full,
    q_bufs, k_bufs, v_bufs, x_bufs, ready, empty, x_ready, x_empty,
    D: gl.constexpr, BV: gl.constexpr, C: gl.constexpr, NS: gl.constexpr, NX: gl.constexpr,
    EARLY_X: gl.constexpr,
):  # fmt: skip
    acc_s: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16]
    )  # S^T [BV, D]
    acc_x: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, C, 16]
    )  # X^T, v^T [BV, C]
    a_state: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_x, k_width=2)
    a_vd: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_s, k_width=2)
    op_dtype: gl.constexpr = q_bufs.dtype

    rv = gl.arange(0, BV, layout=gl.SliceLayout(1, acc_s))
    rk = gl.arange(0, D, layout=gl.SliceLayout(0, acc_s))
    s_ptrs = STATES + s_off + rk[None, :] * D + rv[:, None]  # S^T[v, k] = S[k, v]
    if fresh:
        state = gl.zeros([BV, D], gl.float32, acc_s)
    else:
        state = gl.load(s_ptrs)

    rc = gl.arange(0, C, layout=gl.SliceLayout(0, acc_x)).to(gl.float32)
    q_dec = gl.exp(log_lam * (rc + 1.0))
    k_dec = gl.exp(log_lam * (C - 1.0 - rc))

    for i in range(n_full):
        s = i % NS
        mbarrier.wait(ready.index(s), (i // NS) & 1)
        s_op = gl.convert_layout(state.to(op_dtype), a_state)
        x_t = warpgroup_mma(
            s_op,
            q_bufs.index(s).permute((1, 0)),
            gl.zeros([BV, C], gl.float32, acc_x),
            use_acc=False,
            is_async=True,
        )
        v_t = v_bufs.index(s).permute((1, 0)).load(acc_x)
        vd_t = gl.convert_layout((v_t.to(gl.float32) * k_dec[None, :]).to(op_dtype), a_vd)
        state = warpgroup_mma(vd_t, k_bufs.index(s), state - state * blk_eps, is_async=True)
        # Register operands are read while the products run: each stays alive until its product
        # is done. EARLY_X hands X over while the state update is still running.
        if EARLY_X:
            x_t, s_op = warpgroup_mma_wait(1, deps=(x_t, s_op))
            _hand_over_x(x_t * q_dec[None, :], x_bufs, x_ready, x_empty, i, NX)
            state, vd_t = warpgroup_mma_wait(0, deps=(state, vd_t))
        else:
            x_t, state, s_op, vd_t = warpgroup_mma_wait(0, deps=(x_t, state, s_op, vd_t))
        fence_async_shared()  # the generic read of v before the loader may refill the stage
        mbarrier.arrive(empty.index(s), count=1)
        if not EARLY_X:
            _hand_over_x(x_t * q_dec[None, :], x_bufs, x_ready, x_empty, i, NX)

    gl.store(s_ptrs, state.to(STATES.dtype.element_ty))


@gluon.jit
def _worker_intra(
    q_desc, k_desc, v_desc, o_desc, q_bufs, k_bufs, v_bufs, x_bufs, o_bufs,
    ready, empty, x_ready, x_empty, row0, q_col, k_col, v_col, o_col, n_full, log_lam,
    D: gl.constexpr, BV: gl.constexpr, C: gl.constexpr, NS: gl.constexpr, NX: gl.constexpr,
):  # fmt: skip
    acc_p: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, C, 16]
    )  # scores [C, C]
    acc_o: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BV, 16]
    )  # o [C, BV]
    a_p: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=acc_o, k_width=2)
    op_dtype: gl.constexpr = q_bufs.dtype

    ri = gl.arange(0, C, layout=gl.SliceLayout(1, acc_p)).to(gl.float32)
    rj = gl.arange(0, C, layout=gl.SliceLayout(0, acc_p)).to(gl.float32)
    diff = ri[:, None] - rj[None, :]
    intra_dec = gl.where(diff >= 0, gl.exp(log_lam * gl.maximum(diff, 0.0)), 0.0)

    for i in range(n_full):
        s = i % NS
        mbarrier.wait(ready.index(s), (i // NS) & 1)
        scores = warpgroup_mma(
            q_bufs.index(s),
            k_bufs.index(s).permute((1, 0)),
            gl.zeros([C, C], gl.float32, acc_p),
            use_acc=False,
            is_async=True,
        )
        scores = warpgroup_mma_wait(0, deps=(scores,))
        p = gl.convert_layout((scores * intra_dec).to(op_dtype), a_p)
        o = warpgroup_mma(
            p, v_bufs.index(s), gl.zeros([C, BV], gl.float32, acc_o), use_acc=False, is_async=True
        )
        o, p = warpgroup_mma_wait(0, deps=(o, p))
        mbarrier.arrive(empty.index(s), count=1)

        x = i % NX
        mbarrier.wait(x_ready.index(x), (i // NX) & 1)
        o += x_bufs.index(x).load(acc_o)
        mbarrier.arrive(x_empty.index(x), count=1)

        tma.store_wait(NX - 1)  # the store that last used o_bufs[x] has left shared memory
        o_bufs.index(x).store(o.to(o_desc.dtype))
        fence_async_shared()
        tma.async_copy_shared_to_global(o_desc, [row0 + i * C, o_col], o_bufs.index(x))
    tma.store_wait(0)


@gluon.jit
def _worker_loader(
    q_desc, k_desc, v_desc, o_desc, q_bufs, k_bufs, v_bufs, x_bufs, o_bufs,
    ready, empty, x_ready, x_empty, row0, q_col, k_col, v_col, o_col, n_full, log_lam,
    D: gl.constexpr, BV: gl.constexpr, C: gl.constexpr, NS: gl.constexpr, NX: gl.constexpr,
):  # fmt: skip
    nbytes: gl.constexpr = (
        q_desc.block_type.nbytes + k_desc.block_type.nbytes + v_desc.block_type.nbytes
    )
    for i in range(n_full):
        s = i % NS
        mbarrier.wait(empty.index(s), ((i // NS) & 1) ^ 1)
        bar = ready.index(s)
        mbarrier.expect(bar, nbytes)
        row = row0 + i * C
        tma.async_copy_global_to_shared(q_desc, [row, q_col], bar, q_bufs.index(s))
        tma.async_copy_global_to_shared(k_desc, [row, k_col], bar, k_bufs.index(s))
        tma.async_copy_global_to_shared(v_desc, [row, v_col], bar, v_bufs.index(s))


@gluon.jit
def _gluon_prefill_kernel(
    q_desc, k_desc, v_desc, o_desc, STATES, SLOPES, SLOTS, CU, FRESH,
    stride_qh, stride_kh, stride_vh, stride_oh, stride_sn, stride_sh,
    D: gl.constexpr, BV: gl.constexpr, C: gl.constexpr, NS: gl.constexpr, NX: gl.constexpr,
    INTRA_REGS: gl.constexpr, EARLY_X: gl.constexpr,
):  # fmt: skip
    b = gl.program_id(0)
    h = gl.program_id(1)
    iv = gl.program_id(2)

    lo = gl.load(CU + b)
    n_full = (gl.load(CU + b + 1) - lo) // C
    slot = gl.load(SLOTS + b).to(gl.int64)
    fresh = gl.load(FRESH + b) != 0
    log_lam = -gl.load(SLOPES + h).to(gl.float32)
    # blk_eps = 1 - lam^C without cancellation: triton_math.expm1, written out for Gluon
    x = log_lam * C
    series = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0)))))
    blk_eps = -gl.where(x > -1e-2, series, gl.exp(x) - 1.0)
    s_off = slot * stride_sn + h * stride_sh + iv * BV

    q_bufs = gl.allocate_shared_memory(q_desc.dtype, [NS, C, D], q_desc.layout)
    k_bufs = gl.allocate_shared_memory(k_desc.dtype, [NS, C, D], k_desc.layout)
    v_bufs = gl.allocate_shared_memory(v_desc.dtype, [NS, C, BV], v_desc.layout)
    o_bufs = gl.allocate_shared_memory(o_desc.dtype, [NX, C, BV], o_desc.layout)
    x_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([C, BV], gl.float32)
    x_bufs = gl.allocate_shared_memory(gl.float32, [NX, C, BV], x_layout)
    ready = gl.allocate_shared_memory(gl.int64, [NS, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NS, 1], mbarrier.MBarrierLayout())
    x_ready = gl.allocate_shared_memory(gl.int64, [NX, 1], mbarrier.MBarrierLayout())
    x_empty = gl.allocate_shared_memory(gl.int64, [NX, 1], mbarrier.MBarrierLayout())
    for j in gl.static_range(NS):
        mbarrier.init(ready.index(j), count=1)
        mbarrier.init(empty.index(j), count=2)  # both compute partitions release a stage
    for j in gl.static_range(NX):
        mbarrier.init(x_ready.index(j), count=1)
        mbarrier.init(x_empty.index(j), count=1)

    row0 = lo.to(gl.int32)
    q_col = (h * stride_qh).to(gl.int32)
    k_col = (h * stride_kh).to(gl.int32)
    v_col = (h * stride_vh + iv * BV).to(gl.int32)
    o_col = (h * stride_oh + iv * BV).to(gl.int32)
    # fmt: off
    gl.warp_specialize(
        [
            (_state_partition, (
                STATES, s_off, fresh, log_lam, blk_eps, n_full,
                q_bufs, k_bufs, v_bufs, x_bufs, ready, empty, x_ready, x_empty,
                D, BV, C, NS, NX, EARLY_X,
            )),
            # The worker partitions take the same arguments (a Gluon rule); a tuple literal
            # each time, since constexprs stored in a variable would become tensors.
            (_worker_intra, (
                q_desc, k_desc, v_desc, o_desc, q_bufs, k_bufs, v_bufs, x_bufs, o_bufs,
                ready, empty, x_ready, x_empty, row0, q_col, k_col, v_col, o_col, n_full, log_lam,
                D, BV, C, NS, NX,
            )),
            (_worker_loader, (
                q_desc, k_desc, v_desc, o_desc, q_bufs, k_bufs, v_bufs, x_bufs, o_bufs,
                ready, empty, x_ready, x_empty, row0, q_col, k_col, v_col, o_col, n_full, log_lam,
                D, BV, C, NS, NX,
            )),
        ],
        [4, 1],  # warps of intra and loader (the state partition has the kernel's num_warps)
        [INTRA_REGS, 24],
    )
    # fmt: on


@functools.cache
def _tile_layout(rows: int, cols: int) -> gl.NVMMASharedLayout:
    """Shared-memory layout of a 16-bit tile (computed once: ~6 us per call on a slow host)."""
    return gl.NVMMASharedLayout.get_default_for([rows, cols], gl.bfloat16)


def _desc(x: torch.Tensor, rows: int, cols: int) -> TensorDescriptor:
    """x [T, H, D] as its rows matrix (`layout.rows_matrix`), moved in tiles of rows x cols."""
    return TensorDescriptor(x, *rows_matrix(x), [rows, cols], _tile_layout(rows, cols))


def gluon_prefill_full_blocks(
    q, k, v, out, slopes, states, slots, cu_seqlens, fresh_u8, C: int, config: GluonConfig
) -> None:
    """Run every full block of C rows of each sequence, writing out's rows and the state after
    the last full block into each sequence's slot. No host synchronisation. C is the caller's
    block size: its tail launch starts where these blocks end. config: the Gluon part of the
    caller's launch configuration (`configs.GluonConfig`)."""
    T, H, D = q.shape
    BV = min(config.v_slice, D)
    B = cu_seqlens.shape[0] - 1
    _gluon_prefill_kernel[(B, H, D // BV)](
        _desc(q, C, D), _desc(k, C, D), _desc(v, C, BV), _desc(out, C, BV),
        states, slopes, slots, cu_seqlens, fresh_u8,
        q.stride(1), k.stride(1), v.stride(1), out.stride(1), states.stride(0), states.stride(1),
        D=D, BV=BV, C=C, NS=config.stages, NX=config.handovers,
        INTRA_REGS=config.intra_registers, EARLY_X=config.hand_over_early,
        num_warps=4, maxnreg=config.max_registers,
    )  # fmt: skip
