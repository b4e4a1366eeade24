"""Decode cost of one M1 8-layer group (7 lightning + 1 softmax) against 8 softmax layers.

Attention only, per generated token, M1's layer shapes (64 query heads x 128, 8 KV heads for
softmax layers, bf16 KV cache, float32 lightning state). Both sides are captured in CUDA graphs
and timed by replay in the same run, so launch overhead counts the same way on both.

    python benchmarks/group_decode.py                # on a CUDA machine
    python benchmarks/group_decode.py --smoke        # tiny shapes on the CPU, logic check only
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from m1_kernels import lightning_decode  # noqa: E402
from m1_kernels.lightning.slopes import lightning_slopes  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 64, 8, 128


def softmax_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor:
    # q [B, H, 1, D]; caches [B, KV, T, D]: one new token attending to the whole context.
    return F.scaled_dot_product_attention(q, k_cache, v_cache, enable_gqa=True)


def timed(fn, device: str) -> float:
    """Median microseconds of fn(); CUDA graph replay on GPUs, a plain loop on the CPU."""
    if device == "cpu":
        import time

        fn()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return sorted(runs)[2] * 1e6
    import triton.testing

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return triton.testing.do_bench(graph.replay, warmup=50, rep=300, return_mode="median") * 1e3


def measure_case(
    batch: int,
    context: int,
    heads: int,
    kv_heads: int,
    dim: int,
    kv_dtype: torch.dtype,
    device: str,
) -> dict[str, float]:
    gen = torch.Generator(device=device).manual_seed(batch * 7 + context)
    slopes = torch.tensor(lightning_slopes(heads, 0, 80), device=device)  # M1's first layer
    q = torch.randn(batch, heads, 1, dim, device=device, dtype=kv_dtype, generator=gen)
    k_cache = torch.randn(
        batch, kv_heads, context, dim, device=device, dtype=kv_dtype, generator=gen
    )
    v_cache = torch.randn_like(k_cache)
    ql, kl, vl = (
        0.1 * torch.randn(batch, heads, dim, device=device, dtype=kv_dtype, generator=gen)
        for _ in range(3)
    )
    # Seven lightning layers, each with its own float32 state slots.
    states = [
        0.01 * torch.randn(batch, heads, dim, dim, device=device, generator=gen) for _ in range(7)
    ]
    slots = torch.arange(batch, device=device, dtype=torch.int32)

    def softmax_layers(n: int) -> None:
        for _ in range(n):
            softmax_decode(q, k_cache, v_cache)

    def lightning_layers() -> None:
        for state in states:
            lightning_decode(ql, kl, vl, slopes, state, slots)

    def hybrid_group() -> None:
        lightning_layers()
        softmax_layers(1)

    row = {
        "sequences": batch,
        "context": context,
        "softmax_1_us": timed(lambda: softmax_layers(1), device),
        "softmax_8_us": timed(lambda: softmax_layers(8), device),
        "lightning_7_us": timed(lightning_layers, device),
        "hybrid_7_1_us": timed(hybrid_group, device),
    }
    row["speedup"] = row["softmax_8_us"] / row["hybrid_7_1_us"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    heads, kv_heads, dim = (4, 2, 64) if args.smoke else (HEADS, KV_HEADS, HEAD_DIM)
    cases = [(1, 1024)] if args.smoke else [(1, 8192), (1, 131072), (16, 32768), (64, 131072)]
    kv_dtype = torch.float32 if args.smoke else torch.bfloat16
    rows = [
        measure_case(batch, context, heads, kv_heads, dim, kv_dtype, device)
        for batch, context in cases
    ]

    name = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name()
    print(f"\nDecode per token of one 8-layer group, attention only, {name}:\n")
    print(
        "| sequences | context | 1 softmax | 8 softmax | 7 lightning | 7 lightning + 1 softmax "
        "| hybrid speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['sequences']} | {r['context']:,} | {r['softmax_1_us']:.1f} µs "
            f"| {r['softmax_8_us']:.1f} µs | {r['lightning_7_us']:.1f} µs "
            f"| {r['hybrid_7_1_us']:.1f} µs | {r['speedup']:.2f}x |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
