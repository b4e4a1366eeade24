"""How much of each weight matrix the two online quantizations round away, before any forward
pass: ||Q(W) - W|| / ||W|| for fp8 e4m3 with one scale per tensor (vLLM's online fp8) and int8
with one scale per output channel (experts_int8), for the matrices of two layers.

    python -m benchmarks.quant_rounding CHECKPOINT_DIR [--layers 0,7] [--device cuda]

CHECKPOINT_DIR is gpu_quant.py's cached bf16 checkpoint (~/.cache/m1-mcp/models/gpu-quant-*).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors import safe_open

FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0


def relative_errors(w: torch.Tensor) -> tuple[float, float]:
    w = w.float()
    scale = w.abs().max() / FP8_MAX
    fp8 = (w / scale).to(torch.float8_e4m3fn).float() * scale
    row_scale = w.abs().amax(dim=1, keepdim=True) / INT8_MAX
    int8 = torch.round(w / row_scale).clamp(-INT8_MAX, INT8_MAX) * row_scale
    norm = w.norm()
    return ((fp8 - w).norm() / norm).item(), ((int8 - w).norm() / norm).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--layers", default="0,7")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    prefixes = tuple(f"model.layers.{i}." for i in args.layers.split(","))
    print(f"{'tensor':60s} {'shape':>14s}  fp8/tensor  int8/channel")
    for shard in sorted(args.checkpoint.glob("*.safetensors")):
        with safe_open(str(shard), "pt", device=args.device) as f:
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if not name.startswith(prefixes) or "norm" in name:
                    continue
                w = f.get_tensor(name)
                if w.dim() != 2:
                    continue
                fp8, int8 = relative_errors(w)
                print(f"{name:60s} {str(tuple(w.shape)):>14s}  {fp8:10.4f}  {int8:12.4f}")


if __name__ == "__main__":
    main()
