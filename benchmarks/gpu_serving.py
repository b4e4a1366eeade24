"""Serving M1-shaped models on one GPU through vLLM: the 7:1 hybrid against all-softmax and
against vLLM's own Mixtral, side by side in one run.

    python -m benchmarks.gpu_serving --out DIR                  # all three models, then report
    python -m benchmarks.gpu_serving --out DIR --models hybrid  # some of them
    python -m benchmarks.gpu_serving --report DIR               # tables + PNG from DIR/*.json

The models have M1's real layer widths (hidden 6144; lightning 64 heads x 128; softmax 64 query
and 8 KV heads x 128; SwiGLU experts 9216 wide), cut down to fit one GPU: 8 layers, 4 experts,
top-2, bf16, random weights (vLLM's dummy loader). The vocabulary is the tiny tokenizer's 8,192
so that the LM head, the same for all three, does not hide the layers in an 8-layer model.

* ``hybrid``: MiniMaxM1ForCausalLM (this plugin), layers 7 lightning + 1 softmax;
* ``softmax``: the same class with all 8 layers softmax;
* ``mixtral``: vLLM's in-tree MixtralForCausalLM at the same widths (the reference for the
  softmax path's cost).

Every model runs in its own process (a clean GPU), compiled with CUDA graphs, prefix caching
on, chunked prefill at 32K tokens a step. What is measured:

* prefill: wall time of a 1-token generation of a fresh prompt (no cache hit) at 8K, 32K and
  128K tokens; at batch 1 this is the time to first token;
* decode tokens/s at batch 1, 16 and 64 at contexts 8K, 32K and 128K, and at 128K also at the
  largest batch that fits. The sequences of one measurement share a cached C-token prompt
  and differ in their last 8 tokens, so the set-up prefills C tokens once instead of B x C;
  every sequence still attends over all its C tokens at every step (sharing can only help the
  softmax models, through L2 hits). The rate is the batch over the median time between
  consecutive tokens of a request (vLLM's own per-request timestamps, 36 new tokens each);
* capacity: how many 128K-token sequences the KV cache holds, as vLLM computes it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("hybrid", "softmax", "mixtral")
LABELS = {"hybrid": "M1 hybrid 7:1", "softmax": "M1 all-softmax", "mixtral": "vLLM Mixtral"}
CONTEXTS = (8192, 32768, 131072)
BATCHES = (1, 16, 64)
LONGEST = 131072
MAX_MODEL_LEN = LONGEST + 1024  # the context plus suffix and generated tokens
SUFFIX = 8
SHORT, LONG_RUN = 4, 36  # new tokens of a warm-up run, and of a timed run
VOCAB = 8192

WIDTHS = dict(
    hidden_size=6144,
    num_hidden_layers=8,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=9216,
    num_local_experts=4,
    num_experts_per_tok=2,
    vocab_size=VOCAB,
    rms_norm_eps=1e-5,
    rope_theta=10000000.0,
    max_position_embeddings=1 << 20,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    torch_dtype="bfloat16",
)


def model_config(kind: str) -> dict:
    if kind == "mixtral":
        return dict(WIDTHS, architectures=["MixtralForCausalLM"], model_type="mixtral")
    pattern = [0] * 7 + [1] if kind == "hybrid" else [1] * 8
    alpha = (2 * WIDTHS["num_hidden_layers"]) ** 0.25  # M1's post-norm scale, (2L)^(1/4)
    return dict(
        WIDTHS,
        architectures=[
            "MiniMaxM1ForCausalLM" if kind == "hybrid" else "MiniMaxM1SoftmaxForCausalLM"
        ],
        model_type="minimax_m1",
        attn_type_list=pattern,
        rotary_dim=64,
        postnorm=True,
        shared_intermediate_size=0,
        layernorm_linear_attention_alpha=alpha,
        layernorm_linear_attention_beta=1.0,
        layernorm_full_attention_alpha=alpha,
        layernorm_full_attention_beta=1.0,
        layernorm_mlp_alpha=alpha,
        layernorm_mlp_beta=1.0,
    )


def write_model_dir(kind: str, folder: Path) -> Path:
    """config.json and the tiny tokenizer; the weights come from vLLM's dummy loader."""
    from m1_runtime.engine.checkpoints import TOKENIZER_FILES, preset_dir

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model_config(kind), indent=2))
    for name in TOKENIZER_FILES:
        src = preset_dir("tiny-m1") / name
        if src.is_file():
            (folder / name).write_bytes(src.read_bytes())
    return folder


def prompt(length: int, seed: int) -> list[int]:
    import random

    rng = random.Random(seed)
    return [rng.randrange(5, VOCAB) for _ in range(length)]


def sharing(base: list[int], batch: int, tag: int) -> list[list[int]]:
    """`batch` prompts: the shared `base`, then a short suffix of their own."""
    return [base + prompt(SUFFIX, seed=(tag * 1000 + batch) * 1000 + i) for i in range(batch)]


# ------------------------------------------------------------------------------ one model


def measure(kind: str, out_json: Path) -> None:
    """Runs in the model's own process; its stderr (vLLM's log) goes to a file the parent
    reads the KV capacity from."""
    from vllm import LLM, SamplingParams

    work = Path(tempfile.mkdtemp(prefix=f"m1-bench-{kind}-"))
    started = time.perf_counter()
    llm = LLM(
        model=str(write_model_dir(kind, work)),
        load_format="dummy",
        dtype="bfloat16",
        max_model_len=MAX_MODEL_LEN,
        gpu_memory_utilization=0.90,
        enable_prefix_caching=True,
        max_num_batched_tokens=32768,
        max_num_seqs=256,
        seed=0,
        disable_log_stats=False,  # per-request timestamps (RequestOutput.metrics)
        compilation_config={"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 192, 256]},
    )
    startup_s = time.perf_counter() - started

    def run(prompts: list[list[int]], new_tokens: int) -> tuple[float, float | None]:
        """Wall time of one generate call, and the median decode step the engine timed: each
        request's (last token - first token) / (tokens - 1), from vLLM's own timestamps."""
        params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
        t = time.perf_counter()
        outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        wall = time.perf_counter() - t
        steps = [
            (o.metrics.last_token_ts - o.metrics.first_token_ts) / (new_tokens - 1)
            for o in outs
            if o.metrics is not None and new_tokens > 1 and o.metrics.last_token_ts
        ]
        return wall, (statistics.median(steps) if steps else None)

    run([prompt(1024, seed=1)], 8)  # warm-up: first-call costs are not prefill
    prefill = {}
    for ctx in CONTEXTS:
        reps = 1 if ctx == LONGEST else 2  # a 128K prefill is long enough to time once
        times = [run([prompt(ctx, seed=100 + ctx + r)], 1)[0] for r in range(reps)]
        prefill[ctx] = min(times)
        print(f"[{kind}] prefill {ctx}: {prefill[ctx] * 1e3:.1f} ms", file=sys.stderr)

    fit = capacity_from_log()
    decode: list[dict] = []
    warm: set[int] = set()
    for ctx in CONTEXTS:
        base = prompt(ctx, seed=ctx)
        run([base], 1)  # cache the shared prompt
        batches = list(BATCHES)
        if ctx == LONGEST and fit and int(fit) not in batches:
            batches.append(int(fit))
        for b in batches:
            row = {"context": ctx, "batch": b, "tokens_per_s": None}
            if fit is not None and b > fit * LONGEST / ctx:
                row["note"] = "does not fit"
                decode.append(row)
                continue
            # Fresh suffixes for each run: only the shared prompt is a cache hit. The first run
            # at a new batch size also compiles kernels for its shapes: a warm-up, not timed.
            if b not in warm:
                run(sharing(base, b, tag=0), SHORT)
                warm.add(b)
            wall, step_s = run(sharing(base, b, tag=1), LONG_RUN)
            rate = b / step_s if step_s else None
            row.update(tokens_per_s=rate, step_ms=step_s * 1e3 if step_s else None, wall_s=wall)
            decode.append(row)
            print(f"[{kind}] decode ctx {ctx} batch {b}: {fmt(rate)} tok/s", file=sys.stderr)

    import torch
    import vllm

    result = {
        "model": kind,
        "label": LABELS[kind],
        "config": model_config(kind),
        "startup_s": startup_s,
        "prefill_s": {str(k): v for k, v in prefill.items()},
        "decode": decode,
        "max_128k_sequences": fit,
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }
    out_json.write_text(json.dumps(result, indent=2))


_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")


def matches_in_log(pattern: re.Pattern[str]) -> list:
    """`pattern`'s matches in this child's own log (run_child points M1_BENCH_LOG at it): what
    vLLM says only in its log lines."""
    log = os.environ.get("M1_BENCH_LOG")
    if not log or not Path(log).is_file():
        return []
    return pattern.findall(Path(log).read_text(errors="replace"))


def capacity_from_log() -> float | None:
    """vLLM's own count of max_model_len-token sequences its KV cache holds (logged at start)."""
    found = matches_in_log(_CONCURRENCY)
    if not found:
        return None
    tokens, times = found[-1]
    # vLLM's count is for max_model_len tokens; the question is about 128K-token sequences.
    return float(times) * int(tokens.replace(",", "")) / LONGEST


def run_child(kind: str, out: Path) -> bool:
    return run_module_child("benchmarks.gpu_serving", kind, out, ["--out", str(out)], {})


def run_module_child(
    module: str, name: str, out: Path, args: list[str], extra_env: dict[str, str]
) -> bool:
    """`python -m module --child name args...` in its own process (a clean GPU), its output in
    out/<module's last part with - for _>-<name>.log, which the child can read back."""
    log = out / f"{module.rpartition('.')[2].replace('_', '-')}-{name}.log"
    env = dict(os.environ, M1_BENCH_LOG=str(log), VLLM_LOGGING_LEVEL="INFO", **extra_env)
    with log.open("w") as f:
        code = subprocess.call(
            [sys.executable, "-m", module, "--child", name, *args],
            cwd=ROOT,
            env=env,
            stderr=f,
            stdout=f,
        )
    if code:
        print(f"{name}: failed (exit {code}); see {log}", file=sys.stderr)
    return code == 0


# ------------------------------------------------------------------------------ report


def _decode_rate(result: dict, ctx: int, batch: int) -> float | None:
    for row in result["decode"]:
        if row["context"] == ctx and row["batch"] == batch:
            return row["tokens_per_s"]
    return None


def _largest(result: dict) -> tuple[int, float | None]:
    rows = [r for r in result["decode"] if r["context"] == LONGEST and r["tokens_per_s"]]
    if not rows:
        return 0, None
    best = max(rows, key=lambda r: r["batch"])
    return best["batch"], best["tokens_per_s"]


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def report(folder: Path) -> str:
    results = {}
    for kind in MODELS:
        path = folder / f"gpu-serving-{kind}.json"
        if path.is_file():
            results[kind] = json.loads(path.read_text())
    if not results:
        raise SystemExit(f"no gpu-serving-*.json in {folder}")
    kinds = [k for k in MODELS if k in results]
    any_result = next(iter(results.values()))
    lines = [
        f"# GPU serving: M1-shaped models on one {any_result['gpu']} "
        f"(vLLM {any_result['vllm']}, torch {any_result['torch']})",
        "",
        "8 layers at M1's widths, 4 experts top-2, bf16, random weights, CUDA graphs. "
        "Command: `python -m benchmarks.gpu_serving --out DIR`.",
        "",
        "## Decode tokens/s",
        "",
        "| context | batch | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "|---:|---:|" + "---:|" * len(kinds),
    ]
    keys = sorted({(r["context"], r["batch"]) for res in results.values() for r in res["decode"]})
    for ctx, b in keys:
        cells = []
        for k in kinds:
            row = next(
                (r for r in results[k]["decode"] if (r["context"], r["batch"]) == (ctx, b)), None
            )
            cells.append("-" if row is None else row.get("note") or fmt(row["tokens_per_s"]))
        lines.append(f"| {ctx // 1024}K | {b} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Prefill (time to first token at batch 1) and KV capacity",
        "",
        "| | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for ctx in CONTEXTS:
        lines.append(
            f"| prefill {ctx // 1024}K (ms) | "
            + " | ".join(fmt(results[k]["prefill_s"][str(ctx)] * 1e3, ",.1f") for k in kinds)
            + " |"
        )
    lines.append(
        "| 128K sequences that fit | "
        + " | ".join(fmt(results[k]["max_128k_sequences"], ",.1f") for k in kinds)
        + " |"
    )
    lines.append(
        "| decode tok/s at 128K, largest batch | "
        + " | ".join(
            f"{fmt(_largest(results[k])[1])} (batch {_largest(results[k])[0]})" for k in kinds
        )
        + " |"
    )
    lines.append(
        "| engine start-up (s) | "
        + " | ".join(fmt(results[k]["startup_s"], ".0f") for k in kinds)
        + " |"
    )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    for name, value, goal in _targets(results):
        met = "n/a" if value is None else ("yes" if value > goal else "**no**")
        lines.append(f"| {name} (> {goal}) | {fmt(value, '.2f')} | {met} |")
    text = "\n".join(lines) + "\n"
    (folder / "gpu-serving.md").write_text(text)
    _plot(results, folder / "gpu-serving.png")
    return text


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _targets(results: dict) -> list[tuple[str, float | None, float]]:
    h, s, m = (results.get(k) for k in MODELS)
    rows: list[tuple[str, float | None, float]] = []
    if h and s:
        rows.append(
            (
                "128K sequences that fit, hybrid / all-softmax",
                _ratio(h["max_128k_sequences"], s["max_128k_sequences"]),
                6.0,
            )
        )
        rows.append(
            (
                "decode tok/s at 128K, each at its largest batch",
                _ratio(_largest(h)[1], _largest(s)[1]),
                4.0,
            )
        )
        rows.append(
            (
                "decode tok/s at 128K, batch 16",
                _ratio(_decode_rate(h, LONGEST, 16), _decode_rate(s, LONGEST, 16)),
                2.5,
            )
        )
        rows.append(
            (
                "prefill speed at 128K (all-softmax time / hybrid time)",
                _ratio(s["prefill_s"][str(LONGEST)], h["prefill_s"][str(LONGEST)]),
                4.0,
            )
        )
    if s and m:
        # "within 5%": our all-softmax decode rate at least 0.95 of Mixtral's, on average
        ratios = [
            _ratio(_decode_rate(s, c, b), _decode_rate(m, c, b))
            for c in CONTEXTS
            for b in BATCHES
            if _decode_rate(s, c, b) and _decode_rate(m, c, b)
        ]
        rows.append(
            (
                "all-softmax decode rate / Mixtral's (geometric mean)",
                math.exp(statistics.fmean(map(math.log, ratios))) if ratios else None,
                0.95,
            )
        )
        rows.append(
            (
                "Mixtral prefill time at 128K / all-softmax's",
                _ratio(m["prefill_s"][str(LONGEST)], s["prefill_s"][str(LONGEST)]),
                0.95,
            )
        )
    return rows


def _plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, ctx in zip(axes, CONTEXTS, strict=True):
        for kind, res in results.items():
            rows = sorted(
                (r["batch"], r["tokens_per_s"])
                for r in res["decode"]
                if r["context"] == ctx and r["tokens_per_s"]
            )
            if rows:
                ax.plot(*zip(*rows, strict=True), marker="o", label=LABELS[kind])
        ax.set(
            title=f"decode at {ctx // 1024}K context",
            xlabel="batch",
            ylabel="tokens/s",
            xscale="log",
            yscale="log",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help="only write the tables and PNG from DIR")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        measure(args.child, args.out / f"gpu-serving-{args.child}.json")
        return 0
    ok = [run_child(kind, args.out) for kind in args.models.split(",")]
    print(report(args.out))
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
