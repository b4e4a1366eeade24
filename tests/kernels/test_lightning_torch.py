"""The CPU backend (chunked torch, through the public dispatch) against the float64 recurrence."""

from __future__ import annotations

import pytest
import torch

from m1_kernels import lightning_decode, lightning_prefill
from m1_kernels.lightning.reference import recurrence
from m1_kernels.lightning.testing import layer_slopes, random_qkv, rel_err
from m1_kernels.lightning.torch_chunked import chunked_sequence
from tests.kernels.lightning_cases import check_decode, check_prefill, check_prefill_then_decode

H, D = 4, 32


@pytest.mark.parametrize("layer", [0, 40, 79])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 255, 256, 257, 1031])
def test_single_sequence_float32(T: int, layer: int) -> None:
    err = check_prefill(lightning_prefill, "cpu", [T], H, D, layer=layer, fresh=[False], tol=1e-6)
    assert err < 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_dtypes(dtype: torch.dtype) -> None:
    check_prefill(lightning_prefill, "cpu", [300, 70], H, D, dtype=dtype, fresh=[False, True])


def test_packed_mixed_lengths_slots_and_fresh() -> None:
    lengths = [5, 64, 1, 200, 0, 129, 77]
    fresh = [True, False, False, True, False, True, False]
    check_prefill(lightning_prefill, "cpu", lengths, H, D, fresh=fresh, tol=1e-6)


def test_zero_length_sequence() -> None:
    """An empty sequence keeps its slot's state, or zeroes it when fresh."""
    q, k, v = random_qkv(10, H, D)
    slopes = layer_slopes(H, 0, 80)
    states = torch.randn(3, H, D, D) * 0.05
    before = states.clone()
    cu = torch.tensor([0, 0, 10, 10])
    slots = torch.tensor([0, 1, 2])
    fresh = torch.tensor([False, True, True])
    lightning_prefill(q, k, v, slopes, states, slots, cu, fresh)
    assert torch.equal(states[0], before[0])
    assert torch.all(states[2] == 0)


@pytest.mark.parametrize("B", [1, 7, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_decode(B: int, dtype: torch.dtype) -> None:
    check_decode(lightning_decode, "cpu", B, H, D, dtype=dtype)


@pytest.mark.parametrize("T", [1, 64, 100])
def test_prefill_then_decode(T: int) -> None:
    check_prefill_then_decode(lightning_prefill, lightning_decode, "cpu", T, 5, H, D)


@pytest.mark.parametrize("block", [16, 64, 128])
def test_block_size_and_group_loop(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny group buffers force several block groups per sequence."""
    monkeypatch.setattr("m1_kernels.lightning.torch_chunked._GROUP_BYTES", 1)
    q, k, v = random_qkv(700, 8, 16)
    slopes = layer_slopes(8, 3, 80)
    init = torch.randn(8, 16, 16) * 0.05
    out, state = chunked_sequence(q, k, v, slopes, init, block=block)
    ref_out, ref_state = recurrence(q.double(), k.double(), v.double(), slopes, init.double())
    assert rel_err(out, ref_out) < 1e-6
    assert rel_err(state, ref_state) < 1e-6


def test_long_sequence_deep_and_shallow() -> None:
    """Long enough that the deepest layer's state is a sum of ~4K tokens (barely decays)."""
    for layer in (0, 79):
        check_prefill(lightning_prefill, "cpu", [4100], 2, 16, layer=layer, tol=1e-6)
