"""Triton backend cases, run by test_lightning_triton.py.

Not collected on its own (no test_ prefix): it is run either in a subprocess with
TRITON_INTERPRET=1 set before triton is imported (small shapes, CPU tensors), or in-process on a
CUDA device at full size (M1's 64 heads of 128). M1_KERNEL_DEVICE picks which.
"""

from __future__ import annotations

import os

import pytest
import torch
from lightning_cases import check_decode, check_prefill, check_prefill_then_decode

from kernels.lightning.triton_decode import triton_decode
from kernels.lightning.triton_prefill import triton_prefill

DEVICE = os.environ.get("M1_KERNEL_DEVICE", "cpu")
FULL = DEVICE.startswith("cuda")
H, D = (64, 128) if FULL else (2, 16)
LONG = 4100 if FULL else 300
HUGE = [16384, 32768] if FULL else []


@pytest.mark.parametrize("layer", [0, 79])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 255, 256, 257, 1000, LONG, *HUGE])
def test_prefill_float32_exact(T: int, layer: int) -> None:
    check_prefill(triton_prefill, DEVICE, [T], H, D, layer=layer, fresh=[False], tol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [65, 1000, LONG])
def test_prefill_half(T: int, dtype: torch.dtype) -> None:
    check_prefill(triton_prefill, DEVICE, [T], H, D, dtype=dtype, fresh=[False])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prefill_packed(dtype: torch.dtype) -> None:
    lengths = [5, 64, 1, 200, 0, 129, 77, 300]
    fresh = [True, False, False, True, False, True, False, False]
    check_prefill(triton_prefill, DEVICE, lengths, H, D, dtype=dtype, fresh=fresh)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B", [1, 5, 64] if FULL else [1, 5])
def test_decode(B: int, dtype: torch.dtype) -> None:
    check_decode(triton_decode, DEVICE, B, H, D, dtype=dtype)


def test_prefill_then_decode() -> None:
    check_prefill_then_decode(triton_prefill, triton_decode, DEVICE, 130, 4, H, D)
