"""Triton backend cases, run by test_lightning_triton.py.

Not collected on its own (no test_ prefix): it is run either in a subprocess with
TRITON_INTERPRET=1 set before triton is imported (small shapes, CPU tensors), or in-process on a
CUDA device at full size (M1's 64 heads of 128). M1_KERNEL_DEVICE picks which.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch
from lightning_cases import check_decode, check_prefill, check_prefill_then_decode

from m1_kernels.lightning.testing import random_qkv
from m1_kernels.lightning.triton_decode import triton_decode
from m1_kernels.lightning.triton_prefill import _tma_ok, triton_prefill

DEVICE = os.environ.get("M1_KERNEL_DEVICE", "cpu")
FULL = DEVICE.startswith("cuda")
H, D = (64, 128) if FULL else (2, 16)
LONG = 4100 if FULL else 300
HUGE = [16384, 32768] if FULL else []


def prefill_with(**config):
    """triton_prefill with these launch settings over the defaults."""
    return functools.partial(triton_prefill, config=config)


# Full blocks through plain loads and through the TMA unit (descriptor loads and stores);
# the interpreter runs the descriptor path as well.
LOADS = pytest.mark.parametrize("tma", [False, True], ids=["ld", "tma"])
# 16-bit inputs: the running state held as S [D, BV] or transposed, S^T [BV, D] (`_block_t`).
STATES = pytest.mark.parametrize("state_t", [False, True], ids=["s", "st"])


@pytest.mark.parametrize("layer", [0, 79])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 255, 256, 257, 1000, LONG, *HUGE])
def test_prefill_float32_exact(T: int, layer: int) -> None:
    check_prefill(triton_prefill, DEVICE, [T], H, D, layer=layer, fresh=[False], tol=1e-5)


@LOADS
@pytest.mark.parametrize("T", [64, 1000, *HUGE[:1]])
def test_prefill_float32_exact_loads(T: int, tma: bool) -> None:
    check_prefill(prefill_with(TMA=tma), DEVICE, [T], H, D, layer=79, fresh=[False], tol=1e-5)


@STATES
@LOADS
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [65, 1000, LONG])
def test_prefill_half(T: int, dtype: torch.dtype, tma: bool, state_t: bool) -> None:
    fn = prefill_with(TMA=tma, STATE_T=state_t)
    check_prefill(fn, DEVICE, [T], H, D, dtype=dtype, fresh=[False])


@pytest.mark.parametrize("layer", [0, 79])
def test_prefill_bf16_layers(layer: int) -> None:
    """bf16 at M1's steepest and flattest decays."""
    check_prefill(triton_prefill, DEVICE, [LONG], H, D, dtype=torch.bfloat16, layer=layer)


@STATES
@LOADS
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_packed(dtype: torch.dtype, tma: bool, state_t: bool) -> None:
    lengths = [5, 64, 1, 200, 0, 129, 77, 300]
    fresh = [True, False, False, True, False, True, False, False]
    fn = prefill_with(TMA=tma, STATE_T=state_t)
    check_prefill(fn, DEVICE, lengths, H, D, dtype=dtype, fresh=fresh)


HOPPER = FULL and torch.cuda.get_device_capability()[0] == 9
GLUON = pytest.mark.skipif(not HOPPER, reason="the Gluon kernel needs a Hopper GPU")


@GLUON
@pytest.mark.parametrize("layer", [0, 79])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 1000, LONG, *HUGE])
def test_prefill_gluon(T: int, layer: int) -> None:
    """Full blocks in the warp-specialised Gluon kernel, the tail in the Triton kernel."""
    fn = prefill_with(GLUON=True, GLUON_MIN_TOKENS=0, TMA=True)
    check_prefill(fn, DEVICE, [T], H, D, dtype=torch.bfloat16, layer=layer, fresh=[False])


@pytest.mark.skipif(not FULL, reason="the many-sequence configuration is chosen on a GPU")
def test_prefill_many_sequences() -> None:
    """Enough sequences to select one program per head (the many-sequence defaults)."""
    lengths = [2048 + 7 * b for b in range(16)]
    fresh = [b % 2 == 0 for b in range(16)]
    check_prefill(triton_prefill, DEVICE, lengths, H, D, dtype=torch.bfloat16, fresh=fresh)


@GLUON
@pytest.mark.parametrize("early_x", [False, True], ids=["x", "early_x"])
def test_prefill_gluon_packed(early_x: bool) -> None:
    lengths = [5, 64, 1, 200, 0, 129, 77, 300, 4096, 64]
    fresh = [True, False, False, True, False, True, False, False, True, False]
    gluon_cfg = dict(EARLY_X=early_x)
    fn = prefill_with(GLUON=True, GLUON_MIN_TOKENS=0, GLUON_CFG=gluon_cfg, TMA=True)
    check_prefill(fn, DEVICE, lengths, H, D, dtype=torch.bfloat16, fresh=fresh)


@GLUON
@pytest.mark.parametrize("T", [1000, *HUGE])
def test_prefill_gluon_early_x(T: int) -> None:
    fn = prefill_with(GLUON=True, GLUON_MIN_TOKENS=0, GLUON_CFG=dict(EARLY_X=True), TMA=True)
    check_prefill(fn, DEVICE, [T], H, D, dtype=torch.bfloat16, layer=79, fresh=[False])


def test_tma_takes_the_model_layout() -> None:
    """q, k, v as views of the fused projection qualify for descriptor loads."""
    q, k, v = random_qkv(70, H, D, dtype=torch.bfloat16, device=DEVICE)
    on_hopper = FULL and torch.cuda.get_device_capability()[0] >= 9
    assert all(map(_tma_ok, (q, k, v))) == (on_hopper or not FULL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B", [1, 5, 64] if FULL else [1, 5])
def test_decode(B: int, dtype: torch.dtype) -> None:
    check_decode(triton_decode, DEVICE, B, H, D, dtype=dtype)


@pytest.mark.parametrize("heads_first", [False, True])
@pytest.mark.parametrize("store", ["", ".cs"])
def test_decode_orders_and_stores(heads_first: bool, store: str) -> None:
    decode = functools.partial(triton_decode, config=dict(HEADS_FIRST=heads_first, STORE=store))
    check_decode(decode, DEVICE, 5, H, D, dtype=torch.bfloat16)


def test_prefill_then_decode() -> None:
    check_prefill_then_decode(triton_prefill, triton_decode, DEVICE, 130, 4, H, D)
