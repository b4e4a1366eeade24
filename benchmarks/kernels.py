# ruff: noqa: B023  (lambdas are timed inside the loop iteration that defines them)
"""Lightning-attention kernels on one GPU: exactness, timings beside fla / vLLM / SDPA, HBM floor.

    python benchmarks/kernels.py --check --sweep --bench --out DIR

--check  runs the GPU kernel cases (tests/kernels/test_lightning_triton.py -m gpu, full size)
         into DIR/check.log
--sweep  times launch configurations of the Triton kernels (prefill bf16/fp32, decode);
         with --install, writes the fastest into m1_kernels/lightning/tuned/configs.json as this
         GPU's entry (kernels/lightning/configs.py); the bench of the same run times them
--bench  times every implementation at M1's layer shape (64 heads x 128) and writes
         DIR/kernels-h200.json (rows: op, tokens|sequences, implementation, dtype, ms, rel_err),
         DIR/kernels-h200.md and DIR/kernels-h200.png (when matplotlib is importable)
--plot JSON  only draws the PNG from an existing JSON (on a machine without a GPU)

fla is used when importable (`chunk_simple_gla`, `fused_recurrent_simple_gla`, layout
[B, T, H, D], g_gamma = -slopes, scale 1). vLLM's lightning kernels are timed when
.vllm_ref/lightning_attn.py (a copy of vLLM's file, never committed) is present; otherwise the
anchor's vLLM numbers are printed, labelled as such. Timings are medians of
triton.testing.do_bench (eager launches) or do_bench_cudagraph (graph replay, for decode).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from m1_kernels.lightning import configs  # noqa: E402
from m1_kernels.lightning.configs import (  # noqa: E402
    ConfigTable,
    DecodeConfig,
    DeviceConfigs,
    GluonConfig,
    PrefillConfig,
)
from m1_kernels.lightning.testing import layer_slopes, rel_err  # noqa: E402
from m1_kernels.lightning.torch_chunked import chunked_sequence  # noqa: E402

H, D, KV_HEADS = 64, 128, 8
# float32 inputs through 3xTF32 dots, timed beside the IEEE default (a sweep's winner replaces
# it for the bench of the same run)
TF32X3 = PrefillConfig(
    block_rows=64, v_slice=64, num_warps=8, num_stages=2, state_update_first=False, tma=False,
    dot_precision="tf32x3",
)  # fmt: skip
DEV = "cuda"  # --dry-run switches to the CPU (Triton interpreter, tiny shapes) to test this file
PREFILL_SHAPES = [(1, 4096), (1, 16384), (1, 32768), (1, 131072), (16, 2048)]
DECODE_BATCHES = [1, 16, 64, 256]

# Anchor numbers (ANCHORS.md, one H200, 2026-11-28), printed beside this run's.
ANCHOR_PREFILL_MS = {  # tokens -> (fla bf16, vLLM fp32, SDPA bf16)
    4096: (0.208, 1.079, 0.519),
    16384: (0.776, 4.109, 7.525),
    32768: (1.547, 8.135, 29.33),
    131072: (6.341, 32.25, 506.1),
}
ANCHOR_DECODE_US = {1: (79.0, 16.0), 16: (88.3, 43.1), 64: (163.0, 168.4), 256: (604.8, 672.1)}


def log(*a: object) -> None:
    print(*a, flush=True)


# ----------------------------------------------------------------------------- timing helpers


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def _cpu_ms(fn, n: int = 2) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def bench_ms(fn, rep_ms: float = 200.0) -> float:
    import triton.testing

    if DEV != "cuda":
        return _cpu_ms(fn)
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def bench_graph_ms(fns: list, reps: int = 20) -> float:
    """Median time of one call, replaying a CUDA graph that holds len(fns) calls (fns rotate
    over distinct buffers so nothing is served from L2 that would not be in a real model)."""
    if DEV != "cuda":
        return _cpu_ms(lambda: [f() for f in fns]) / len(fns)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in fns:  # warm-up / compile outside the capture
            f()
    torch.cuda.current_stream().wait_stream(s)
    sync()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in fns:
            f()
    g.replay()
    sync()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / len(fns))
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + written), 2 GiB buffers."""
    n = 2**30 // 2 if DEV == "cuda" else 2**20
    a = torch.empty(n * 2, dtype=torch.bfloat16, device=DEV).normal_()
    b = torch.empty_like(a)
    ms = bench_ms(lambda: b.copy_(a), rep_ms=300)
    return 2 * n * 2 * 2 / (ms * 1e-3)


def matmul_tflops() -> float:
    n = 8192 if DEV == "cuda" else 256
    a = torch.randn(n, n, dtype=torch.bfloat16, device=DEV)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=DEV)
    ms = bench_ms(lambda: a @ b, rep_ms=300)
    return 2 * n**3 / (ms * 1e-3) / 1e12


# ----------------------------------------------------------------------------- inputs


def make_inputs(B: int, T: int, dtype: torch.dtype, seed: int = 0):
    """B sequences of T tokens, packed: q, k, v [B*T, H, D] as non-contiguous views of silu'd
    [.., 3D] projections (values ~0.1), fresh zero-state slots 0..B-1."""
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(B * T, H, 3 * D, device=DEV, dtype=torch.bfloat16, generator=g)
    qkv = (torch.nn.functional.silu(x) * 0.25).to(dtype)
    del x
    q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
    slopes = layer_slopes(H, 0, 80, device=DEV)
    cu = torch.arange(0, B + 1, device=DEV, dtype=torch.int32) * T
    slots = torch.arange(B, device=DEV, dtype=torch.int32)
    fresh = torch.ones(B, dtype=torch.bool, device=DEV)
    states = torch.zeros(B, H, D, D, device=DEV, dtype=torch.float32)
    return q, k, v, slopes, states, slots, cu, fresh


def reference_f64(q, k, v, slopes, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 outputs and final states, by the exact block form in float64 on the GPU
    (tests check that form against the token-by-token recurrence)."""
    outs, sts = [], []
    for b in range(B):
        sl = slice(b * T, (b + 1) * T)
        o, s = chunked_sequence(q[sl].double(), k[sl].double(), v[sl].double(), slopes, None)
        outs.append(o)
        sts.append(s)
    return torch.cat(outs), torch.stack(sts)


# ----------------------------------------------------------------------------- other kernels


def load_fla():
    try:
        from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla

        return chunk_simple_gla, fused_recurrent_simple_gla
    except Exception as exc:
        log(f"fla not importable: {exc!r}")
        return None


def load_vllm():
    """vLLM's lightning_attn.py, loaded standalone (its three vllm imports shimmed)."""
    src = ROOT / ".vllm_ref" / "lightning_attn.py"
    if not src.exists():
        log("vLLM lightning_attn.py absent (.vllm_ref/): printing the anchor's vLLM numbers")
        return None
    text = src.read_text()
    text = text.replace(
        "from vllm.platforms import current_platform",
        "class current_platform:\n    @staticmethod\n    def is_cuda():\n        return True",
    )
    text = text.replace(
        "from vllm.triton_utils import tl, triton", "import triton\nimport triton.language as tl"
    )
    text = text.replace(
        "from vllm.v1.attention.backends.utils import PAD_SLOT_ID", "PAD_SLOT_ID = -1"
    )
    path = Path(tempfile.mkdtemp()) / "vllm_lightning_attn.py"
    path.write_text(text)
    try:
        spec = importlib.util.spec_from_file_location("vllm_lightning_attn", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    except Exception as exc:
        log(f"vLLM lightning_attn.py did not load: {exc!r}")
        return None


# ----------------------------------------------------------------------------- sweep


def compiled_resources(jit_fn) -> list[str]:
    """Registers, spills and shared memory of each variant of jit_fn compiled so far (for the
    sweep's log; the cache layout is Triton's internal, so failures just yield nothing)."""
    lines = []
    try:
        for cache in jit_fn.device_caches.values():
            for key, kern in cache[0].items():
                getattr(kern, "_init_handles", lambda: None)()  # fills n_regs, n_spills
                lines.append(
                    f"regs {kern.n_regs} spills {kern.n_spills} "
                    f"smem {kern.metadata.shared} warps {kern.metadata.num_warps} "
                    f"stages {kern.metadata.num_stages} | {str(key)[-160:]}"
                )
    except Exception as exc:  # pragma: no cover - depends on the Triton version
        lines.append(f"(no resource report: {type(exc).__name__}: {exc})")
    return lines


@dataclass(frozen=True)
class SweepWinners:
    """The fastest configuration of each kind the sweep timed (None: that set did not run)."""

    prefill_float32: PrefillConfig | None = None  # IEEE dots, within 1e-5 of float64
    prefill_16bit: PrefillConfig | None = None  # bf16 at batch 1 (float16 takes it without Gluon)
    decode_few_rows: DecodeConfig | None = None
    decode_many_rows: DecodeConfig | None = None
    tf32x3: PrefillConfig | None = None  # float32 through 3xTF32: a benchmark row, not a default


def tuned_entry(current: DeviceConfigs, winners: SweepWinners, source: str) -> DeviceConfigs:
    """current with the winners in place of what they replace (everything else kept)."""
    prefill = dict(current.prefill)
    if winners.prefill_float32 is not None:
        prefill["float32"] = winners.prefill_float32
    if winners.prefill_16bit is not None:
        prefill["bfloat16"] = winners.prefill_16bit
        prefill["float16"] = dataclasses.replace(winners.prefill_16bit, gluon=None)
    return dataclasses.replace(
        current,
        source=source,
        prefill=prefill,
        decode_few_rows=winners.decode_few_rows or current.decode_few_rows,
        decode_many_rows=winners.decode_many_rows or current.decode_many_rows,
    )


def install(winners: SweepWinners, device: str, path: Path = configs.TABLE_PATH) -> ConfigTable:
    """Write the winners into the configuration table at path as device's entry (starting
    from the entry the device uses now), and have the kernels read the file again."""
    table = configs.load_table(path)
    source = f"benchmarks/kernels.py --sweep --install on {device}, {time.strftime('%Y-%m-%d')}"
    new = table.with_device(device, tuned_entry(table.for_device(device), winners, source))
    configs.save_table(new, path)
    configs.reload_installed()
    return new


def sweep(out_dir: Path, what: str = "all") -> SweepWinners:
    """Time launch configurations around the installed ones; return the fastest of each kind."""
    from m1_kernels.lightning import triton_decode as dec
    from m1_kernels.lightning import triton_prefill as pre

    tuned = configs.device_configs(torch.device(DEV))
    # Also tried on 2026-11-28 and dropped (slower at 16K; docs/kernels.md): Triton's warp
    # specialisation, accumulator multi-buffering off, the row decay folded out of the output,
    # one program per head (BV = 128, 8 warps), C = 128, 2 stages for many sequences, and the
    # intra-block decay matrix in fp16 (within noise: -2% on one machine, +1% on another).
    triton_only = PrefillConfig(
        block_rows=64, v_slice=64, num_warps=4, num_stages=4, state_update_first=True, tma=True
    )
    gluon = GluonConfig(
        min_tokens=8192, v_slice=64, stages=3, handovers=2, intra_registers=232,
        max_registers=168, hand_over_early=False,
    )  # fmt: skip
    bf16_space = [
        triton_only,
        dataclasses.replace(triton_only, state_transposed=True),  # S^T (`_block_t`)
    ] + [  # full blocks in the warp-specialised Gluon kernel (stages; X handed over early)
        dataclasses.replace(
            triton_only, gluon=dataclasses.replace(gluon, stages=ns, hand_over_early=early)
        )
        for ns, early in [(2, True), (3, False), (3, True), (4, True)]
    ]
    # one program per head (no duplicated q k^T) for many sequences, where the grid is full
    per_head = tuned.many_sequences
    small = functools.partial(PrefillConfig, block_rows=32, v_slice=32, state_update_first=False)
    wide = functools.partial(
        PrefillConfig, block_rows=64, v_slice=64, num_warps=8, state_update_first=False
    )
    fp32_space = [
        small(num_warps=4, num_stages=1, tma=False),
        small(num_warps=8, num_stages=1, tma=False),
        small(num_warps=8, num_stages=2, tma=True),
        wide(num_stages=1, tma=False),
        wide(num_stages=2, tma=False, dot_precision="tf32x3"),
        wide(num_stages=2, tma=True, dot_precision="tf32x3"),
    ]
    summary: dict = {}
    winners = SweepWinners()
    best_bf16: list[PrefillConfig] = []
    for tag, dtype, B, T, space in [
        ("bf16 1x16K", torch.bfloat16, 1, 16384, bf16_space),
        ("bf16 16x2K", torch.bfloat16, 16, 2048, None),
        ("bf16 1x128K", torch.bfloat16, 1, 131072, None),
        ("fp32 1x4K", torch.float32, 1, 4096, fp32_space),
    ]:
        if what == "bf16" and not tag.startswith("bf16"):
            continue  # "prefill" runs every prefill set
        space = space if space is not None else best_bf16[:3]
        if tag == "bf16 16x2K":
            space = [*space, per_head, dataclasses.replace(per_head, num_stages=2)]
        if DEV != "cuda":  # dry run: tiny
            T, space = max(T // 128, 40), space[:3]
        q, k, v, slopes, states, slots, cu, fresh = make_inputs(B, T, dtype)
        ref_o, _ = reference_f64(q, k, v, slopes, B, T)
        res = []
        for cfg in space:
            try:
                fn = lambda cfg=cfg: pre.triton_prefill(  # noqa: E731
                    q, k, v, slopes, states, slots, cu, fresh, config=cfg
                )
                err = rel_err(fn(), ref_o)
                res.append((bench_ms(fn, rep_ms=100), err, cfg))
            except Exception as exc:
                log(f"  prefill {tag} {cfg}: failed {type(exc).__name__}: {str(exc)[:160]}")
        res.sort(key=lambda r: r[0])
        log(f"sweep prefill {tag}: best (ms, rel err, config):")
        for ms, err, cfg in res[:10]:
            log(f"  {ms:.4f}  {err:.2e}  {cfg}")
        summary[tag] = [(ms, err, configs.plain(cfg)) for ms, err, cfg in res]
        if tag.startswith("bf16 1x"):
            best_bf16 = [cfg for _, err, cfg in res if err < 1e-2]  # only exact enough ones
            if best_bf16:  # the last batch-1 set decides (the longest sequence)
                winners = dataclasses.replace(winners, prefill_16bit=best_bf16[0])
        if tag.startswith("fp32"):
            ok = [r for r in res if r[1] < 1e-5]
            exact = [r[2] for r in ok if r[2].dot_precision == "ieee"]
            x3 = [r[2] for r in ok if r[2].dot_precision == "tf32x3"]
            winners = dataclasses.replace(
                winners,
                prefill_float32=exact[0] if exact else None,
                tf32x3=x3[0] if x3 else None,
            )
            if ok:
                summary["fp32 fastest within 1e-5"] = (ok[0][0], ok[0][1], configs.plain(ok[0][2]))

    dspace = [
        DecodeConfig(v_slice=bv, num_warps=w, heads_first=hf, state_store=st)
        for bv, w, hf, st in itertools.product([32, 64, 128], [2, 4, 8], [False, True], ["", ".cs"])
    ]
    if DEV != "cuda":
        dspace = dspace[:2]
    for B in ([1, 256] if DEV == "cuda" else [1]) if what == "all" else []:  # decode
        n_buf = max(2, 256 // B)
        q, k, v, slopes, _, _, _, _ = make_inputs(B, 1, torch.bfloat16)
        bufs = [torch.randn(B, H, D, D, device=DEV) * 0.05 for _ in range(n_buf)]
        slots = torch.arange(B, device=DEV, dtype=torch.int32)
        dres = []
        for dcfg in dspace:
            try:
                fns = [
                    lambda s=s, c=dcfg: dec.triton_decode(q, k, v, slopes, s, slots, config=c)
                    for s in bufs
                ]
                dres.append((bench_graph_ms(fns) * 1e3, dcfg))
            except Exception as exc:
                log(f"  decode {dcfg}: failed {type(exc).__name__}: {str(exc)[:160]}")
        dres.sort(key=lambda r: r[0])
        log(f"sweep decode B={B} (graph replay): best (us, config):")
        for us, dcfg in dres[:8]:
            log(f"  {us:.2f}  {dcfg}")
        summary[f"decode B={B}"] = [(us, configs.plain(c)) for us, c in dres]
        if dres:
            few = B < tuned.decode_many_rows_from
            key = "decode_few_rows" if few else "decode_many_rows"
            winners = dataclasses.replace(winners, **{key: dres[0][1]})
    from m1_kernels.lightning import gluon_prefill as glu

    for fn in (pre._prefill_kernel, glu._gluon_prefill_kernel, dec._decode_kernel):
        log(f"compiled variants of {fn.__name__}:")
        for line in compiled_resources(fn):
            log("  " + line)
    summary["installed before the sweep"] = configs.plain(tuned)
    summary["winners"] = configs.plain(winners)
    log(f"winners: {winners}")
    (out_dir / "kernels-h200.sweep.json").write_text(json.dumps(summary, indent=1))
    return winners


# ----------------------------------------------------------------------------- bench


def bench(out_dir: Path, tf32x3: PrefillConfig = TF32X3) -> list[dict]:
    from m1_kernels.lightning.triton_decode import triton_decode
    from m1_kernels.lightning.triton_prefill import triton_prefill

    rows: list[dict] = []

    def add(op, size_key, size, impl, dtype, ms, err=None, **extra):
        row = {"op": op, size_key: size, "implementation": impl, "dtype": dtype, "ms": ms}
        row["rel_err"] = err
        row.update(extra)
        rows.append(row)
        (out_dir / "kernels-h200.json").write_text(json.dumps(rows, indent=1))
        e = "" if err is None else f"  rel_err {err:.2e}"
        log(f"{op:8s} {size_key}={size:<7} {impl:10s} {dtype:9s} {ms:9.4f} ms{e}")

    bw = copy_bandwidth()
    tf = matmul_tflops()
    log(f"ceilings: copy {bw / 1e12:.2f} TB/s, bf16 matmul {tf:.0f} TFLOP/s")
    fla = load_fla()
    vllm = load_vllm()

    for B, T in PREFILL_SHAPES:
        ntok = B * T
        label = f"{B}x{T}" if B > 1 else str(T)
        floor = 4 * ntok * H * D * 2 / bw * 1e3
        add("prefill", "tokens", label, "hbm-floor", "bf16", floor)
        for dtype, name in [(torch.bfloat16, "bf16"), (torch.float32, "fp32")]:
            q, k, v, slopes, states, slots, cu, fresh = make_inputs(B, T, dtype, seed=T + B)
            ref_o, ref_s = reference_f64(q, k, v, slopes, B, T)
            try:
                o = triton_prefill(q, k, v, slopes, states, slots, cu, fresh)
                sync()
                err = max(rel_err(o, ref_o), rel_err(states, ref_s))
                del o
                ms = bench_ms(lambda: triton_prefill(q, k, v, slopes, states, slots, cu, fresh))
                add("prefill", "tokens", label, "m1", name, ms, err)
                if name == "fp32":
                    cfg = tf32x3
                    o = triton_prefill(q, k, v, slopes, states, slots, cu, fresh, config=cfg)
                    sync()
                    err = max(rel_err(o, ref_o), rel_err(states, ref_s))
                    del o
                    ms = bench_ms(
                        lambda: triton_prefill(
                            q, k, v, slopes, states, slots, cu, fresh, config=cfg
                        )
                    )
                    add("prefill", "tokens", label, "m1", "fp32-tf32x3", ms, err)
            except Exception:
                log(traceback.format_exc())
            if fla is not None:
                try:
                    # fla gets contiguous [B, T, H, D] copies (its fastest case)
                    qf, kf, vf = (x.reshape(B, T, H, D).contiguous() for x in (q, k, v))
                    fn = lambda: fla[0](  # noqa: E731
                        qf, kf, vf, g_gamma=-slopes, scale=1.0, output_final_state=True
                    )
                    o, s = fn()
                    err = max(rel_err(o.reshape(-1, H, D), ref_o), rel_err(s, ref_s))
                    del o, s
                    add("prefill", "tokens", label, "fla", name, bench_ms(fn), err)
                except Exception:
                    log(traceback.format_exc())
            if vllm is not None and name == "fp32" and B == 1:
                try:
                    qv, kv_, vv = (
                        x.reshape(B, T, H, D).transpose(1, 2).contiguous() for x in (q, k, v)
                    )
                    fn = lambda: vllm.lightning_attention(qv, kv_, vv, slopes, 256, None)  # noqa: E731
                    o, s = fn()
                    o = o.transpose(1, 2).reshape(-1, H, D)
                    err = rel_err(o, ref_o)
                    del o, s
                    add("prefill", "tokens", label, "vllm", name, bench_ms(fn), err)
                except Exception:
                    log(traceback.format_exc())
            torch.cuda.empty_cache()
        # softmax layer: SDPA causal GQA 64/8 in bf16 (cost of the layer M1 keeps every 8th)
        try:
            qs = torch.randn(B, H, T, D, device=DEV, dtype=torch.bfloat16)
            ks = torch.randn(B, KV_HEADS, T, D, device=DEV, dtype=torch.bfloat16)
            vs = torch.randn(B, KV_HEADS, T, D, device=DEV, dtype=torch.bfloat16)
            fn = lambda: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
                qs, ks, vs, is_causal=True, enable_gqa=True
            )
            add(
                "prefill",
                "tokens",
                label,
                "sdpa",
                "bf16",
                bench_ms(fn, rep_ms=300 if T < 100000 else 2000),
            )
        except Exception:
            log(traceback.format_exc())
        torch.cuda.empty_cache()

    for B in DECODE_BATCHES:
        floor = B * H * D * D * 4 * 2 / bw * 1e3
        add("decode", "sequences", B, "hbm-floor", "fp32-state", floor)
        n_buf = max(2, 256 // B)  # rotate states so batch 1 is not served from L2
        for dtype, name in [(torch.bfloat16, "bf16"), (torch.float32, "fp32")]:
            q, k, v, slopes, _, _, _, _ = make_inputs(B, 1, dtype, seed=B)
            bufs = [torch.randn(B, H, D, D, device=DEV) * 0.05 for _ in range(n_buf)]
            perm = torch.randperm(B, device=DEV).to(torch.int32)
            # exactness on a copy of the first buffer (timed runs update the buffers), vs float64
            s0 = bufs[0].clone()
            s64 = s0.double()
            lam = torch.exp(-slopes.double()).view(1, H, 1, 1)
            ref_s = lam * s64[perm.long()] + k.double().unsqueeze(-1) * v.double().unsqueeze(-2)
            ref_o = (q.double().unsqueeze(-2) @ ref_s).squeeze(-2)
            try:
                st = s0.clone()
                o = triton_decode(q, k, v, slopes, st, perm)
                sync()
                err = max(rel_err(o, ref_o), rel_err(st[perm.long()], ref_s))
                eager = bench_ms(lambda: triton_decode(q, k, v, slopes, bufs[0], perm))
                fns = [lambda s=s: triton_decode(q, k, v, slopes, s, perm) for s in bufs]
                graph = bench_graph_ms(fns)
                add("decode", "sequences", B, "m1", name, graph, err, eager_ms=eager)
            except Exception:
                log(traceback.format_exc())
            if fla is not None:
                try:
                    qf, kf, vf = (x.reshape(B, 1, H, D).contiguous() for x in (q, k, v))

                    def fla_decode(s):
                        return fla[1](
                            qf, kf, vf, g_gamma=-slopes, scale=1.0, initial_state=s,
                            output_final_state=True,
                        )  # fmt: skip

                    fn = functools.partial(fla_decode, s0)
                    ref_plain = lam * s64 + k.double().unsqueeze(-1) * v.double().unsqueeze(-2)
                    o, s = fn()
                    err = max(
                        rel_err(
                            o.reshape(B, H, D), (q.double().unsqueeze(-2) @ ref_plain).squeeze(-2)
                        ),
                        rel_err(s, ref_plain),
                    )
                    eager = bench_ms(fn)
                    fns = [functools.partial(fla_decode, s_) for s_ in bufs]
                    try:
                        graph = bench_graph_ms(fns)
                    except Exception as exc:
                        log(f"fla decode graph capture failed: {exc!r}")
                        graph = None
                    # Like every decode row: ms is graph replay, eager_ms the plain launches.
                    timing = "graph" if graph is not None else "eager (graph capture failed)"
                    ms = graph if graph is not None else eager
                    add(
                        "decode",
                        "sequences",
                        B,
                        "fla",
                        name,
                        ms,
                        err,
                        eager_ms=eager,
                        timing=timing,
                    )
                except Exception:
                    log(traceback.format_exc())
            if vllm is not None and name == "fp32":
                try:
                    # vLLM's decode assumes contiguous q, k, v (it writes out with q's strides)
                    q4, k4, v4 = (x.reshape(B, H, 1, D).contiguous() for x in (q, k, v))
                    sl = slopes.view(H, 1, 1).contiguous()
                    st = s0.clone()
                    o = vllm.linear_decode_forward_triton(q4, k4, v4, st, sl, perm.long())
                    err = max(rel_err(o.reshape(B, H, D), ref_o), rel_err(st[perm.long()], ref_s))
                    fns = [
                        lambda s=s: vllm.linear_decode_forward_triton(
                            q4, k4, v4, s, sl, perm.long()
                        )
                        for s in bufs
                    ]
                    eager = bench_ms(fns[0])
                    graph = bench_graph_ms(fns)
                    add("decode", "sequences", B, "vllm", name, graph, err, eager_ms=eager)
                except Exception:
                    log(traceback.format_exc())
            torch.cuda.empty_cache()

    dev_name = torch.cuda.get_device_name() if DEV == "cuda" else "cpu (dry run)"
    meta = {
        "copy_TBps": bw / 1e12,
        "matmul_bf16_TFLOPs": tf,
        "device": dev_name,
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "fla": fla is not None,
        "vllm": vllm is not None,
    }
    (out_dir / "kernels-h200.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "kernels-h200.meta.json").write_text(json.dumps(meta, indent=1))
    md = table(rows, meta)
    (out_dir / "kernels-h200.md").write_text(md)
    log(md)
    try:
        plot(rows, out_dir / "kernels-h200.png")
    except Exception as exc:
        log(f"no plot: {exc!r}")
    return rows


# ----------------------------------------------------------------------------- report


def table(rows: list[dict], meta: dict | None = None) -> str:
    def get(op, size, impl, dtype):
        key = "tokens" if op == "prefill" else "sequences"
        for r in rows:
            if (
                r["op"] == op
                and r.get(key) == size
                and r["implementation"] == impl
                and r["dtype"] == dtype
            ):
                return r
        return None

    def fmt(r, scale=1.0, unit=""):
        if r is None or r["ms"] is None:
            return "–"
        e = "" if r.get("rel_err") is None else f" ({r['rel_err']:.1e})"
        return f"{r['ms'] * scale:.3f}{unit}{e}"

    out = []
    if meta:
        out.append(
            f"Device {meta['device']}; copy {meta['copy_TBps']:.2f} TB/s, bf16 matmul "
            f"{meta['matmul_bf16_TFLOPs']:.0f} TFLOP/s; torch {meta['torch']}, "
            f"triton {meta['triton']}.\n"
        )
    out.append("Prefill, one lightning layer (64 heads x 128), ms (rel err vs float64):\n")
    out.append(
        "| tokens | m1 bf16 | m1 fp32 | m1 fp32 3xTF32 | fla bf16 | fla fp32 | vLLM fp32 | "
        "SDPA bf16 | HBM floor | "
        "m1 vs fla (bf16) | anchor fla / vLLM / SDPA |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sizes = []
    for r in rows:
        if r["op"] == "prefill" and r["tokens"] not in sizes:
            sizes.append(r["tokens"])
    for s in sizes:
        m1b, fla_b = get("prefill", s, "m1", "bf16"), get("prefill", s, "fla", "bf16")
        ratio = f"{fla_b['ms'] / m1b['ms']:.2f}x" if m1b and fla_b else "–"
        anc = ANCHOR_PREFILL_MS.get(int(s) if str(s).isdigit() else -1)
        anc_s = " / ".join(f"{a:g}" for a in anc) if anc else "–"
        vl = get("prefill", s, "vllm", "fp32")
        out.append(
            f"| {s} | {fmt(m1b)} | {fmt(get('prefill', s, 'm1', 'fp32'))} | "
            f"{fmt(get('prefill', s, 'm1', 'fp32-tf32x3'))} | {fmt(fla_b)} | "
            f"{fmt(get('prefill', s, 'fla', 'fp32'))} | {fmt(vl) if vl else '(absent)'} | "
            f"{fmt(get('prefill', s, 'sdpa', 'bf16'))} | "
            f"{fmt(get('prefill', s, 'hbm-floor', 'bf16'))} | "
            f"{ratio} | {anc_s} |"
        )
    out.append(
        "\nDecode, one lightning layer, µs per call (CUDA-graph replay unless noted; rel err):\n"
    )
    out.append(
        "| sequences | m1 bf16 | m1 fp32 | m1 eager bf16 | fla bf16 | fla bf16 eager | vLLM fp32 | "
        "state floor | m1 % of copy bw | anchor fla / vLLM |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in DECODE_BATCHES:
        m1b = get("decode", b, "m1", "bf16")
        fl = get("decode", b, "hbm-floor", "fp32-state")
        pct = f"{100 * fl['ms'] / m1b['ms']:.0f}%" if m1b and fl else "–"
        eager = f"{m1b['eager_ms'] * 1e3:.1f}" if m1b and m1b.get("eager_ms") else "–"
        vl = get("decode", b, "vllm", "fp32")
        fla_b = get("decode", b, "fla", "bf16")
        fla_eager = f"{fla_b['eager_ms'] * 1e3:.1f}" if fla_b and fla_b.get("eager_ms") else "–"
        anc = ANCHOR_DECODE_US.get(b, (math.nan, math.nan))
        out.append(
            f"| {b} | {fmt(m1b, 1e3)} | {fmt(get('decode', b, 'm1', 'fp32'), 1e3)} | {eager} | "
            f"{fmt(fla_b, 1e3)} | {fla_eager} | {fmt(vl, 1e3) if vl else '(absent)'} | "
            f"{fmt(fl, 1e3)} | {pct} | {anc[0]:g} / {anc[1]:g} |"
        )
    return "\n".join(out) + "\n"


def _panel(ax, rows: list[dict], op: str, size_key: str, scale: float, series, labels) -> None:
    """One log-log panel: each (implementation, dtype, style) series of `op` rows over size_key
    (batch-1 prefill rows only: sizes like "16x2048" are left out)."""
    for impl, dtype, style in series:
        pts = [
            (int(r[size_key]), r["ms"] * scale)
            for r in rows
            if r["op"] == op
            and r["implementation"] == impl
            and r["dtype"] == dtype
            and str(r[size_key]).isdigit()
        ]
        if pts:
            ax.loglog(*zip(*sorted(pts), strict=True), style, label=f"{impl} {dtype}")
    xlabel, ylabel, title = labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5))
    prefill = [
        ("m1", "bf16", "o-"),
        ("m1", "fp32", "o--"),
        ("fla", "bf16", "s-"),
        ("vllm", "fp32", "^-"),
        ("sdpa", "bf16", "x-"),
        ("hbm-floor", "bf16", "k:"),
    ]
    decode = [
        ("m1", "bf16", "o-"),
        ("fla", "bf16", "s-"),
        ("vllm", "fp32", "^-"),
        ("hbm-floor", "fp32-state", "k:"),
    ]
    labels = ("tokens (batch 1)", "ms", "prefill, one lightning layer (64x128)")
    _panel(a1, rows, "prefill", "tokens", 1.0, prefill, labels)
    _panel(
        a2,
        rows,
        "decode",
        "sequences",
        1e3,
        decode,
        ("sequences", "µs", "decode, one lightning layer"),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--sweep-what", choices=["all", "prefill", "bf16"], default="all")
    ap.add_argument(
        "--install",
        action="store_true",
        help=f"write --sweep's winners into {configs.TABLE_PATH.name} for this GPU",
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (interpreter)")
    ap.add_argument("--plot", type=Path, help="draw the PNG and the table from this JSON; exit")
    ap.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results"))
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        rows = json.loads(args.plot.read_text())
        meta_path = args.plot.with_suffix(".meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        md = table(rows, meta)
        args.plot.with_suffix(".md").write_text(md)
        print(md)
        try:
            plot(rows, args.plot.with_suffix(".png"))
        except ImportError as exc:
            print(f"no plot: {exc!r}", file=sys.stderr)
        return
    if args.dry_run:
        global DEV, H, D, KV_HEADS, PREFILL_SHAPES, DECODE_BATCHES
        os.environ["TRITON_INTERPRET"] = "1"
        DEV, H, D, KV_HEADS = "cpu", 4, 16, 2
        PREFILL_SHAPES, DECODE_BATCHES = [(1, 100), (2, 40)], [1, 4]
        sweep(args.out)
        bench(args.out)
        return
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA device (use --plot JSON to draw from saved results)")
    log(f"{torch.cuda.get_device_name()} torch {torch.__version__}")
    if args.check:
        t = time.time()
        env = dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}")
        env.pop("TRITON_INTERPRET", None)
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-x",
                "-m",
                "gpu",
                str(ROOT / "tests/kernels/test_lightning_triton.py"),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        (args.out / "check.log").write_text(p.stdout + p.stderr)
        log(
            f"check: rc={p.returncode} in {time.time() - t:.0f}s\n"
            f"{p.stdout[-3000:]}{p.stderr[-2000:]}"
        )
    tf32x3 = TF32X3
    if args.sweep:
        winners = sweep(args.out, what=args.sweep_what)
        tf32x3 = winners.tf32x3 or TF32X3
        if args.install:
            install(winners, torch.cuda.get_device_name())
            log(f"installed into {configs.TABLE_PATH} (commit it to keep them)")
    if args.bench:
        bench(args.out, tf32x3)


if __name__ == "__main__":
    main()
