"""M1's per-head decay rates for the lightning recurrence (decay = exp(-slope)).

One definition for the model, the kernel tests and the benchmarks.
"""

from __future__ import annotations

import math


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's per-head slopes: a geometric series for powers of two, interleaved otherwise."""

    def power_of_two(n: int) -> list[float]:
        ratio = 2.0 ** (-8.0 / n)
        return [ratio ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    lower = 2 ** math.floor(math.log2(num_heads))
    # Take the nearest power of two, then fill with every other slope of the next one up.
    return power_of_two(lower) + alibi_slopes(2 * lower)[0::2][: num_heads - lower]


def lightning_slopes(num_heads: int, layer_idx: int, num_layers: int) -> list[float]:
    """Per-head decay rates s_h of one lightning layer (decay = exp(-s_h)).

    ``layer_idx`` counts every layer, softmax ones too: deeper layers decay more slowly.
    """
    if num_layers <= 1:
        factor = 1.0 + 1e-5
    else:
        factor = 1.0 - layer_idx / (num_layers - 1) + 1e-5
    return [s * factor for s in alibi_slopes(num_heads)]
