"""Host cost of one prefill call against its GPU time, per path (Triton alone, Gluon + Triton).

    python benchmarks/prefill_host.py

Eager timings (do_bench) include whatever the host adds when it cannot launch as fast as the GPU
runs; CUDA-graph replay leaves only GPU time; the launch column is the host's wall time per
call when calls are issued back to back without waiting for the GPU (median of 5 x 20 calls).
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from pathlib import Path

import torch
import triton.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from m1_kernels.lightning.testing import layer_slopes, random_qkv  # noqa: E402
from m1_kernels.lightning.triton_prefill import triton_prefill  # noqa: E402

H, D = 64, 128
PATHS = {
    "triton": dict(GLUON=False),
    "gluon NS=3": dict(GLUON=True, GLUON_MIN_TOKENS=0, GLUON_CFG=dict(NS=3)),
    "gluon NS=4": dict(GLUON=True, GLUON_MIN_TOKENS=0, GLUON_CFG=dict(NS=4)),
}


def launch_us(fn) -> float:
    """Host wall time per call, 20 calls back to back (the GPU queue absorbs them)."""
    runs = []
    for _ in range(5):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(20):
            fn()
        runs.append((time.perf_counter() - t) / 20 * 1e6)
        torch.cuda.synchronize()
    return statistics.median(runs)


def main() -> None:
    print(f"{torch.cuda.get_device_name()}\n")
    print("| path | tokens | eager ms | graph ms | host launch us |")
    print("|---|---:|---:|---:|---:|")
    for T in (4096, 16384):
        q, k, v = random_qkv(T, H, D, dtype=torch.bfloat16, device="cuda")
        slopes = layer_slopes(H, 0, 80, device="cuda")
        states = torch.zeros(1, H, D, D, device="cuda")
        slots = torch.zeros(1, dtype=torch.int32, device="cuda")
        cu = torch.tensor([0, T], dtype=torch.int32, device="cuda")
        fresh = torch.ones(1, dtype=torch.bool, device="cuda")
        for name, cfg in PATHS.items():
            fn = functools.partial(
                triton_prefill, q, k, v, slopes, states, slots, cu, fresh, config=cfg
            )
            fn()
            eager = triton.testing.do_bench(fn, rep=200)
            graph = triton.testing.do_bench_cudagraph(fn, rep=200)
            print(f"| {name} | {T} | {eager:.4f} | {graph:.4f} | {launch_us(fn):.1f} |", flush=True)


if __name__ == "__main__":
    main()
