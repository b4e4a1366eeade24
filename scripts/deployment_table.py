"""Per-GPU memory of MiniMax-M1 deployments, computed from the model config: the README's
"Deploying on several GPUs" table.

    .venv/bin/python -m scripts.deployment_table [--config configs/models/minimax-m1-80k.json]
        [--tokens 131072] [--utilization 0.9] [--reserve-gib 5] [--json]

Every number is arithmetic on the config, laid out the way this plugin shards the model under
vLLM (nothing here was measured on a GPU):

* tensor parallel shards every linear layer and every expert's intermediate dimension (vLLM's
  fused MoE without expert parallelism), the vocabulary of the embedding and of the LM head,
  and the lightning heads; the router and the per-layer RMSNorms are replicated; softmax KV
  heads are split, or replicated when there are fewer of them than ranks;
* pipeline parallel gives each stage a contiguous range of layers (vLLM's even split), the
  embedding to the first stage and the LM head to the last; the table shows the fuller GPU;
* 'fp8' (vLLM's online per-tensor fp8) stores every linear layer and the experts in one byte
  with a float32 scale per tensor; 'experts_int8' stores the experts in one byte with a float32
  scale per output channel and keeps the linear layers in bf16; the router, embedding, LM
  head and norms stay bf16 under both;
* a sequence holds the softmax layers' K and V in the model dtype (bf16; kv_cache_dtype
  "auto") for every token, plus one float32 [heads, D, D] state per lightning layer.

What is left for KV and state is utilization x GPU memory - weights - a reserve for everything
else vLLM holds (activations at the batch-token budget, CUDA graphs, the CUDA context, NCCL
buffers). vLLM measures that reserve when it starts; --reserve-gib is an assumption.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from m1_runtime.model.config import M1Architecture, architecture_of

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
# Memory each card reports (nvidia-smi's total, MiB): H100 SXM 80 GB and H200 141 GB.
GPU_MIB = {"H100": 81559, "H200": 143771}
BF16 = 2
FP32 = 4


@dataclass(frozen=True)
class Deployment:
    name: str
    gpu: str
    nodes: int
    gpus_per_node: int
    tp: int
    pp: int
    quantization: str | None  # None (bf16), "fp8" or "experts_int8"


# The rows issue 14 asks for.
DEPLOYMENTS = (
    Deployment("8xH200, bf16, TP8", "H200", 1, 8, 8, 1, None),
    Deployment("8xH100, fp8, TP8", "H100", 1, 8, 8, 1, "fp8"),
    Deployment("8xH100, experts_int8, TP8", "H100", 1, 8, 8, 1, "experts_int8"),
    Deployment("2 nodes x 8xH100, bf16, TP8 x PP2", "H100", 2, 8, 8, 2, None),
)


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """vLLM's default split: equal shares, the remainder to the last stages."""
    base, extra = divmod(num_layers, pp)
    sizes = [base + (1 if i >= pp - extra else 0) for i in range(pp)]
    starts = [sum(sizes[:i]) for i in range(pp)]
    return [range(s, s + n) for s, n in zip(starts, sizes, strict=True)]


def _pad(n: int, multiple: int = 64) -> int:
    return math.ceil(n / multiple) * multiple  # vLLM pads the vocabulary to a multiple of 64


def weight_bytes(arch: M1Architecture, layers: range, first: bool, last: bool, d: Deployment):
    """Bytes of weights one GPU of stage `layers` holds."""
    tp, quant = d.tp, d.quantization
    h, inner = arch.hidden_size, arch.num_heads * arch.head_dim
    kv_heads = max(1, arch.num_kv_heads // tp)
    linear_bytes = 1 if quant == "fp8" else BF16
    expert_bytes = 1 if quant in ("fp8", "experts_int8") else BF16
    total = 0.0
    for i in layers:
        if arch.is_lightning(i):
            linear = [(h, 3 * inner // tp), (h, inner // tp), (inner // tp, h)]
            total += (inner // tp) * BF16  # the sharded group norm
        else:
            qkv = (arch.num_heads // tp + 2 * kv_heads) * arch.head_dim
            linear = [(h, qkv), (arch.num_heads // tp * arch.head_dim, h)]
        for fan_in, fan_out in linear:
            total += fan_in * fan_out * linear_bytes + (FP32 if quant == "fp8" else 0)
        inter = arch.expert_intermediate // tp
        experts = arch.num_experts * 3 * h * inter
        total += experts * expert_bytes
        if quant == "fp8":
            total += arch.num_experts * 2 * FP32  # one scale per expert per w13 and w2
        elif quant == "experts_int8":
            total += arch.num_experts * (2 * inter + h) * FP32  # per output channel
        total += h * arch.num_experts * BF16  # the router, replicated
        total += 2 * h * BF16  # the two RMSNorms, replicated
    vocab = _pad(arch.vocab_size) // tp
    if first:
        total += vocab * h * BF16
    if last:
        total += vocab * h * BF16 + h * BF16  # LM head and final norm
    return total


def sequence_bytes(arch: M1Architecture, layers: range, tp: int, tokens: int) -> tuple[int, int]:
    """(KV bytes, lightning state bytes) one sequence of `tokens` takes on one GPU."""
    kv_heads = max(1, arch.num_kv_heads // tp)
    softmax = sum(not arch.is_lightning(i) for i in layers)
    lightning = len(layers) - softmax
    kv = softmax * 2 * kv_heads * arch.head_dim * BF16 * tokens
    state = lightning * (arch.num_heads // tp) * arch.head_dim * arch.head_dim * FP32
    return kv, state


def rows(arch: M1Architecture, tokens: int, utilization: float, reserve_gib: float):
    out = []
    for d in DEPLOYMENTS:
        stages = stage_layers(arch.num_layers, d.pp)
        per_stage = []
        for s, layers in enumerate(stages):
            weights = weight_bytes(arch, layers, s == 0, s == d.pp - 1, d)
            kv, state = sequence_bytes(arch, layers, d.tp, tokens)
            per_stage.append((weights, kv, state))
        weights, kv, state = max(per_stage)  # the fuller GPU bounds the deployment
        capacity = GPU_MIB[d.gpu] * 1024**2
        left = utilization * capacity - weights - reserve_gib * GIB
        per_seq = kv + state
        out.append(
            {
                **asdict(d),
                "gpu_gib": capacity / GIB,
                "weights_gib": weights / GIB,
                "left_for_kv_and_state_gib": left / GIB,
                "kv_per_sequence_gib": kv / GIB,
                "state_per_sequence_gib": state / GIB,
                "sequences": max(0, math.floor(left / per_seq)),
                "tokens_in_one_sequence": max(0, math.floor((left - state) / (kv / tokens))),
                "run": False,  # arithmetic only; no row has run on GPUs yet
            }
        )
    return out


def markdown(table: list[dict], tokens: int, utilization: float, reserve_gib: float) -> str:
    head = (
        f"| deployment | weights / GPU | left for KV + state / GPU | one {tokens // 1024}K "
        f"sequence / GPU (KV + state) | {tokens // 1024}K sequences at once | KV room for "
        "one sequence | run? |\n|---|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in table:
        lines.append(
            f"| {r['name']} | {r['weights_gib']:.1f} GiB of {r['gpu_gib']:.1f} | "
            f"{r['left_for_kv_and_state_gib']:.1f} GiB | {r['kv_per_sequence_gib']:.3f} + "
            f"{r['state_per_sequence_gib']:.3f} GiB | {r['sequences']} | "
            f"{r['tokens_in_one_sequence'] / 1e6:.1f}M tokens | "
            f"{'run' if r['run'] else 'arithmetic'} |"
        )
    lines.append(
        f"\nAssumes gpu_memory_utilization {utilization} and {reserve_gib:g} GiB per GPU for "
        "activations, CUDA graphs, the CUDA context and NCCL."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=ROOT / "configs" / "models" / "minimax-m1-80k.json"
    )
    parser.add_argument("--tokens", type=int, default=131072, help="tokens per sequence")
    parser.add_argument("--utilization", type=float, default=0.9, help="gpu_memory_utilization")
    parser.add_argument("--reserve-gib", type=float, default=5.0, help="non-KV memory per GPU")
    parser.add_argument("--json", action="store_true", help="JSON instead of a markdown table")
    args = parser.parse_args(argv)
    if not 1 <= args.tokens <= 10_240_000:
        parser.error("--tokens must be in [1, 10240000]")
    if not 0 < args.utilization <= 1:
        parser.error("--utilization must be in (0, 1]")
    if not 0 <= args.reserve_gib <= 64:
        parser.error("--reserve-gib must be in [0, 64]")
    arch = architecture_of(SimpleNamespace(**json.loads(args.config.read_text())))
    table = rows(arch, args.tokens, args.utilization, args.reserve_gib)
    if args.json:
        sys.stdout.write(json.dumps(table, indent=2) + "\n")
    else:
        sys.stdout.write(markdown(table, args.tokens, args.utilization, args.reserve_gib) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
