"""Device-side math shared by the Triton lightning kernels."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def expm1(x):
    """exp(x) - 1 for x <= 0, accurate to float32 rounding also when x is tiny.

    The kernels decay the state as S - (1 - lam^m) S: lam^m itself, rounded to float32 and
    applied thousands of times, would bias long sequences with slow decay by ~1e-5.
    """
    series = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0)))))
    return tl.where(x > -1e-2, series, tl.exp(x) - 1.0)
