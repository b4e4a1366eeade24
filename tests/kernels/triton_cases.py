"""The Triton backend's cases against the float64 recurrence, for two targets: Triton's
interpreter on the CPU (small shapes) and a CUDA device at full size (M1's 64 heads of 128).

Each case is data: an id and a function that runs it (raising AssertionError on a failure), so
that test_lightning_triton.py can make each one its own pytest case, in-process on a GPU or in
an interpreter worker process. Importing this module imports no Triton code: the kernels are
imported when a case runs, so under the interpreter they are decorated after TRITON_INTERPRET=1
is set.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from m1_kernels.lightning.testing import random_qkv
from tests.kernels.lightning_cases import check_decode, check_prefill, check_prefill_then_decode


@dataclass(frozen=True)
class Target:
    """Where the cases run and at what size."""

    device: str  # "cpu" (the interpreter) or "cuda"
    H: int
    D: int
    long: int  # a sequence of many blocks
    huge: tuple[int, ...]  # very long sequences (GPU only)
    hopper: bool  # compute capability 9: the Gluon kernel can run

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


INTERPRETER = Target("cpu", H=2, D=16, long=300, huge=(), hopper=False)


def gpu_target() -> Target:
    hopper = torch.cuda.get_device_capability()[0] == 9
    return Target("cuda", H=64, D=128, long=4100, huge=(16384, 32768), hopper=hopper)


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[], None]
    skip: str | None = None  # why the target cannot run it


Prefill = Callable[..., torch.Tensor]


def prefill_with(gluon: dict[str, Any] | None = None, **changes: Any) -> Prefill:
    """triton_prefill with these fields changed in the measured configuration it would pick
    for the inputs (none: exactly as the model calls it); gluon: fields changed in its Gluon
    part (the bf16 entry's Gluon part where the pick has none)."""

    def prefill(q, k, v, slopes, states, slots, cu_seqlens, fresh):
        from m1_kernels.lightning.configs import device_configs
        from m1_kernels.lightning.triton_prefill import default_prefill_config, triton_prefill

        if not changes and gluon is None:  # the kernel's own pick
            return triton_prefill(q, k, v, slopes, states, slots, cu_seqlens, fresh)
        config = default_prefill_config(q, cu_seqlens.shape[0] - 1)
        fields = dict(changes)
        if gluon is not None:
            base = config.gluon or device_configs(q.device).prefill["bfloat16"].gluon
            assert base is not None, "no Gluon configuration installed for this device"
            fields["gluon"] = dataclasses.replace(base, **gluon)
        config = dataclasses.replace(config, **fields)
        return triton_prefill(q, k, v, slopes, states, slots, cu_seqlens, fresh, config=config)

    return prefill


def decode_with(**changes: Any) -> Callable[..., torch.Tensor]:
    """triton_decode with these fields changed in the measured configuration it would pick."""

    def decode(q, k, v, slopes, states, slots):
        from m1_kernels.lightning.triton_decode import default_decode_config, triton_decode

        if not changes:  # the kernel's own pick
            return triton_decode(q, k, v, slopes, states, slots)
        config = dataclasses.replace(default_decode_config(q), **changes)
        return triton_decode(q, k, v, slopes, states, slots, config=config)

    return decode


def _dtype_id(dtype: torch.dtype) -> str:
    return {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}[dtype]


LOADS = {"ld": False, "tma": True}  # full blocks through plain loads or the TMA unit
STATES = {"s": False, "st": True}  # 16-bit inputs: the state held as S or as S^T (`_block_t`)


def cases(t: Target) -> list[Case]:
    """Every case for target t, in a stable order."""
    out: list[Case] = []
    no_gluon = None if t.hopper else "the Gluon kernel needs a Hopper GPU"

    def add(name: str, run: Callable[[], None], skip: str | None = None, **params: Any) -> None:
        out.append(Case("-".join([name, *(f"{k}={v}" for k, v in params.items())]), run, skip))

    # float32 inputs: IEEE dots, within 1e-5 of float64 at M1's steepest and flattest decays
    lengths_f32 = [1, 63, 64, 65, 255, 256, 257, 1000, t.long, *t.huge]
    for T, layer in itertools.product(lengths_f32, [0, 79]):
        add(
            "prefill_float32_exact",
            lambda T=T, layer=layer: check_prefill(
                prefill_with(), t.device, [T], t.H, t.D, layer=layer, fresh=[False], tol=1e-5
            ),
            T=T, layer=layer,
        )  # fmt: skip
    for T, (load, tma) in itertools.product([64, 1000, *t.huge[:1]], LOADS.items()):
        add(
            "prefill_float32_exact_loads",
            lambda T=T, tma=tma: check_prefill(
                prefill_with(tma=tma), t.device, [T], t.H, t.D, layer=79, fresh=[False], tol=1e-5
            ),
            T=T, loads=load,
        )  # fmt: skip
    # 16-bit inputs, each load path and state orientation
    for T, dtype, (load, tma), (st, state_t) in itertools.product(
        [65, 1000, t.long], [torch.bfloat16, torch.float16], LOADS.items(), STATES.items()
    ):
        add(
            "prefill_half",
            lambda T=T, dtype=dtype, tma=tma, state_t=state_t: check_prefill(
                prefill_with(tma=tma, state_transposed=state_t),
                t.device, [T], t.H, t.D, dtype=dtype, fresh=[False],
            ),
            T=T, dtype=_dtype_id(dtype), loads=load, state=st,
        )  # fmt: skip
    for layer in [0, 79]:  # bf16 at M1's steepest and flattest decays, measured configuration
        add(
            "prefill_bf16_layers",
            lambda layer=layer: check_prefill(
                prefill_with(), t.device, [t.long], t.H, t.D, dtype=torch.bfloat16, layer=layer
            ),
            layer=layer,
        )
    # packed variable-length batches: empty and one-token sequences, fresh and carried states
    lengths = [5, 64, 1, 200, 0, 129, 77, 300]
    fresh = [True, False, False, True, False, True, False, False]
    for dtype, (load, tma), (st, state_t) in itertools.product(
        [torch.float32, torch.bfloat16], LOADS.items(), STATES.items()
    ):
        add(
            "prefill_packed",
            lambda dtype=dtype, tma=tma, state_t=state_t: check_prefill(
                prefill_with(tma=tma, state_transposed=state_t),
                t.device, lengths, t.H, t.D, dtype=dtype, fresh=fresh,
            ),
            dtype=_dtype_id(dtype), loads=load, state=st,
        )  # fmt: skip
    if t.on_gpu:
        # Full blocks in the warp-specialised Gluon kernel, the tail in the Triton kernel.
        for T, layer in itertools.product([1, 63, 64, 65, 1000, t.long, *t.huge], [0, 79]):
            add(
                "prefill_gluon",
                lambda T=T, layer=layer: check_prefill(
                    prefill_with(tma=True, gluon=dict(min_tokens=0)),
                    t.device, [T], t.H, t.D, dtype=torch.bfloat16, layer=layer, fresh=[False],
                ),
                no_gluon, T=T, layer=layer,
            )  # fmt: skip
        # Enough sequences to select one program per head (the many-sequence configuration).
        many = [2048 + 7 * b for b in range(16)]
        add(
            "prefill_many_sequences",
            lambda: check_prefill(
                prefill_with(), t.device, many, t.H, t.D, dtype=torch.bfloat16,
                fresh=[b % 2 == 0 for b in range(16)],
            ),
        )  # fmt: skip
        gluon_lengths = [5, 64, 1, 200, 0, 129, 77, 300, 4096, 64]
        gluon_fresh = [True, False, False, True, False, True, False, False, True, False]
        for early in [False, True]:
            add(
                "prefill_gluon_packed",
                lambda early=early: check_prefill(
                    prefill_with(tma=True, gluon=dict(min_tokens=0, hand_over_early=early)),
                    t.device, gluon_lengths, t.H, t.D, dtype=torch.bfloat16, fresh=gluon_fresh,
                ),
                no_gluon, early_x=early,
            )  # fmt: skip
        for T in [1000, *t.huge]:
            add(
                "prefill_gluon_early_x",
                lambda T=T: check_prefill(
                    prefill_with(tma=True, gluon=dict(min_tokens=0, hand_over_early=True)),
                    t.device, [T], t.H, t.D, dtype=torch.bfloat16, layer=79, fresh=[False],
                ),
                no_gluon, T=T,
            )  # fmt: skip

    def tma_takes_the_model_layout() -> None:
        """q, k, v as views of the fused projection qualify for descriptor loads."""
        from m1_kernels.lightning.triton_prefill import _tma_ok

        q, k, v = random_qkv(70, t.H, t.D, dtype=torch.bfloat16, device=t.device)
        on_hopper = t.on_gpu and torch.cuda.get_device_capability()[0] >= 9
        assert all(map(_tma_ok, (q, k, v))) == (on_hopper or not t.on_gpu)

    add("tma_takes_the_model_layout", tma_takes_the_model_layout)
    rows = [1, 5, 64] if t.on_gpu else [1, 5]
    for dtype, B in itertools.product([torch.float32, torch.bfloat16], rows):
        add(
            "decode",
            lambda B=B, dtype=dtype: check_decode(
                decode_with(), t.device, B, t.H, t.D, dtype=dtype
            ),
            B=B, dtype=_dtype_id(dtype),
        )  # fmt: skip
    for heads_first, store in itertools.product([False, True], ["", ".cs"]):
        add(
            "decode_orders_and_stores",
            lambda heads_first=heads_first, store=store: check_decode(
                decode_with(heads_first=heads_first, state_store=store),
                t.device, 5, t.H, t.D, dtype=torch.bfloat16,
            ),
            heads_first=heads_first, store=store or "default",
        )  # fmt: skip
    add(
        "prefill_then_decode",
        lambda: check_prefill_then_decode(
            prefill_with(), decode_with(), t.device, 130, 4, t.H, t.D
        ),
    )
    return out
