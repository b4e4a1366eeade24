"""Is stage 1's error a limit of the adapters' rank or of the lightning form itself?

    python -m scripts.linearize.rank_probe --text OUT/teacher_text.pt --layers 0,14,29 \
        --ranks 16,128,0 --steps 120 --out OUT/rank_probe.json

Trains lightning candidates for a few layers with stage 1's loop (the teacher's own states,
relative squared error of the attention output), once per rank, on the same batches. Rank 0
trains the three projections in full (the whole matrices, not an adapter): if full rank barely
beats rank 16, no larger delta would have rescued the layer map, and the gap is the form's
(silu features, one fixed decay per head). Prints a table; writes the numbers to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--text", type=Path, required=True, help="a recipe run's teacher_text.pt")
    ap.add_argument("--layers", default="0,14,29")
    ap.add_argument("--ranks", default="16,128,0", help="0: the projections in full")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--full-lr", type=float, default=2e-4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from m1_runtime.engine import smol_m1, smol_m1_hybrid
    from scripts.linearize import data, train
    from scripts.linearize.cli import precision
    from scripts.linearize.model import HybridLM

    hf, tok = smol_m1.load_source(smol_m1.gguf_path())
    base_config = smol_m1.m1_config(hf.config, tok)
    base = smol_m1.m1_tensors(hf.state_dict(), base_config)
    n = base_config["num_hidden_layers"]
    config = smol_m1_hybrid.hybrid_config(base_config, [1] * n)
    layers = sorted({int(x) for x in args.layers.split(",")})
    ranks = [int(x) for x in args.ranks.split(",")]
    teacher = HybridLM(base, config)
    saved = torch.load(args.text)
    samples = [data.Sample(*s) for s in saved["train"]]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    results = []
    with precision(torch.device("cpu"), "bfloat16"):
        for rank in ranks:
            student = HybridLM(base, config, candidates=set(layers), attn_rank=rank)
            lr = args.lr
            if rank == 0:
                # Full rank: the projections themselves learn (a smaller rate: they are the
                # pretrained weights, not a zero-initialised update).
                lr = args.full_lr
                for i in layers:
                    lightning = student.layers[i].lightning
                    assert lightning is not None
                    for proj in (lightning.qkv_proj, lightning.output_gate, lightning.out_proj):
                        weight = proj.weight
                        del proj.weight
                        proj.weight = torch.nn.Parameter(weight.clone())
            stream = data.batches(samples, args.batch, args.seq_len, 0, pad)
            s1 = train.stage1(teacher, student, stream, "cpu", args.steps, 0.0, lr, 1e-2, log)
            trained = sum(p.numel() for p in student.trainable("1"))
            results.append(
                {
                    "rank": rank or "full",
                    "trained_parameters_per_layer": trained // len(layers),
                    "final_errors": s1["final_errors"],
                    "seconds": s1["seconds"],
                }
            )
            log(f"rank {rank or 'full'}: {s1['final_errors']}")
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    head = "| rank | trained per layer | " + " | ".join(f"layer {i}" for i in layers) + " |"
    print(head)
    print("|---" * (2 + len(layers)) + "|")
    for r in results:
        errs = " | ".join(f"{r['final_errors'][str(i)]:.3f}" for i in layers)
        print(f"| {r['rank']} | {r['trained_parameters_per_layer']:,} | {errs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
