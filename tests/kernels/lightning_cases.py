"""Exactness checks for one lightning-attention backend against the float64 recurrence.

Each check takes the backend's prefill / decode functions (the `kernels.lightning_prefill`
contract) and a device, so the same cases run on the torch CPU path, under Triton's interpreter
and on a GPU. Inputs are fresh random draws (never zeros); errors are ||out - ref|| / ||ref||.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from m1_kernels.lightning.reference import reference_decode, reference_prefill
from m1_kernels.lightning.testing import layer_slopes, random_qkv, random_states, rel_err

Prefill = Callable[..., torch.Tensor]
Decode = Callable[..., torch.Tensor]

TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.bfloat16: 1e-2, torch.float16: 5e-3}
NUM_LAYERS = 80


def _poison(device: str) -> None:
    """On CUDA, leave NaNs in the caching allocator's free blocks so unwritten outputs show."""
    if device.startswith("cuda"):
        junk = torch.full((64 * 2**20,), float("nan"), device=device)
        del junk


def _f64(*ts: torch.Tensor) -> list[torch.Tensor]:
    """float64 copies for the reference; it runs on the GPU when the inputs live there."""
    return [t.detach().to(torch.float64) for t in ts]


def check_prefill(
    prefill: Prefill,
    device: str,
    lengths: list[int],
    H: int,
    D: int,
    dtype: torch.dtype = torch.float32,
    layer: int = 0,
    fresh: list[bool] | None = None,
    seed: int = 0,
    tol: float | None = None,
) -> float:
    """Packed prefill of len(lengths) sequences through a non-identity slot map.

    Slots not used by any sequence must come back bit-identical. Returns the worst error.
    """
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    T = sum(lengths)
    num_slots = 2 * B + 1
    fresh = fresh if fresh is not None else [b % 3 == 2 for b in range(B)]
    q, k, v = random_qkv(T, H, D, dtype=dtype, device=device, generator=g)
    slopes = layer_slopes(H, layer, NUM_LAYERS, device=device)
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    states = random_states(num_slots, H, D, dtype=state_dtype, device=device, generator=g)
    perm = torch.randperm(num_slots, generator=g)[:B]
    slots = perm.to(device=device, dtype=torch.int32)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    cu = cu.to(device)
    fresh_t = torch.tensor(fresh, dtype=torch.bool, device=device)

    ref_states = states.detach().to(torch.float64).clone()
    ref_out = reference_prefill(*_f64(q, k, v), slopes, ref_states, slots, cu, fresh_t)
    before = states.clone()
    _poison(device)
    out = prefill(q, k, v, slopes, states, slots, cu, fresh_t)
    if device.startswith("cuda"):
        torch.cuda.synchronize()

    assert out.shape == (T, H, D) and out.dtype == dtype and out.device == q.device
    tol = tol if tol is not None else TOL[dtype]
    worst = 0.0
    if T:
        err = rel_err(out, ref_out)
        worst = max(worst, err)
        assert err < tol, f"out: rel err {err:.3e} >= {tol:.0e} (lengths {lengths}, {dtype})"
        for b in range(B):  # per sequence, so a short one can't hide behind a long one
            lo, hi = int(cu[b]), int(cu[b + 1])
            if hi > lo:
                e = rel_err(out[lo:hi], ref_out[lo:hi])
                assert e < tol, f"seq {b} (len {hi - lo}): out rel err {e:.3e} >= {tol:.0e}"
    used = set(perm.tolist())
    for b, slot in enumerate(perm.tolist()):
        e = rel_err(states[slot], ref_states[slot])
        worst = max(worst, e)
        st_tol = max(tol, 1e-5) if dtype != torch.float64 else tol
        assert e < st_tol, f"seq {b} state: rel err {e:.3e} >= {st_tol:.0e}"
    for slot in range(num_slots):
        if slot not in used:
            assert torch.equal(states[slot], before[slot]), f"unused slot {slot} was written"
    return worst


def check_decode(
    decode: Decode,
    device: str,
    B: int,
    H: int,
    D: int,
    dtype: torch.dtype = torch.float32,
    layer: int = 0,
    pad_every: int = 3,
    seed: int = 0,
) -> float:
    """Decode of B rows, every pad_every-th row padded (slot -1): zero output, no state write."""
    g = torch.Generator().manual_seed(seed)
    num_slots = 2 * B + 1
    q, k, v = random_qkv(B, H, D, dtype=dtype, device=device, generator=g)
    slopes = layer_slopes(H, layer, NUM_LAYERS, device=device)
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    states = random_states(num_slots, H, D, dtype=state_dtype, device=device, generator=g)
    slots_l = torch.randperm(num_slots, generator=g)[:B]
    if pad_every:
        slots_l[pad_every - 1 :: pad_every] = -1
    slots = slots_l.to(device=device, dtype=torch.int64)

    ref_states = states.detach().to(torch.float64).clone()
    ref_out = reference_decode(*_f64(q, k, v), slopes, ref_states, slots)
    before = states.clone()
    _poison(device)
    out = decode(q, k, v, slopes, states, slots)
    if device.startswith("cuda"):
        torch.cuda.synchronize()

    assert out.shape == (B, H, D) and out.dtype == dtype
    tol = TOL[dtype]
    worst = 0.0
    live = [b for b in range(B) if slots_l[b] >= 0]
    pads = [b for b in range(B) if slots_l[b] < 0]
    if live:
        err = rel_err(out[live], ref_out[live])
        worst = err
        assert err < tol, f"decode out: rel err {err:.3e} >= {tol:.0e} (B={B}, {dtype})"
    for b in pads:
        assert torch.all(out[b] == 0), f"padded row {b} is not zero"
    used = {int(s) for s in slots_l.tolist() if s >= 0}
    for slot in range(num_slots):
        if slot in used:
            e = rel_err(states[slot], ref_states[slot])
            worst = max(worst, e)
            assert e < max(tol, 1e-5), f"decode state slot {slot}: rel err {e:.3e}"
        else:
            assert torch.equal(states[slot], before[slot]), f"untouched slot {slot} was written"
    return worst


def check_prefill_then_decode(
    prefill: Prefill,
    decode: Decode,
    device: str,
    T: int,
    steps: int,
    H: int,
    D: int,
    layer: int = 0,
    seed: int = 0,
) -> float:
    """Prefill of T tokens then `steps` decodes gives the outputs of one T+steps prefill."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = random_qkv(T + steps, H, D, device=device, generator=g)
    slopes = layer_slopes(H, layer, NUM_LAYERS, device=device)
    states = random_states(3, H, D, device=device, generator=g)
    slot = torch.tensor([1], dtype=torch.int32, device=device)
    cu = torch.tensor([0, T], dtype=torch.int32, device=device)
    fresh = torch.tensor([True], device=device)
    outs = [prefill(q[:T], k[:T], v[:T], slopes, states, slot, cu, fresh)]
    for t in range(T, T + steps):
        outs.append(decode(q[t : t + 1], k[t : t + 1], v[t : t + 1], slopes, states, slot))
    out = torch.cat(outs)

    ref_states = torch.zeros(3, H, D, D, dtype=torch.float64, device=device)
    cu_all = torch.tensor([0, T + steps], dtype=torch.int32, device=device)
    ref = reference_prefill(*_f64(q, k, v), slopes, ref_states, slot, cu_all, fresh)
    err = max(rel_err(out, ref), rel_err(states[1], ref_states[1]))
    assert err < 1e-5, f"prefill+decode vs one prefill: rel err {err:.3e}"
    return err
