"""What the GPU suite runs, shared with the script that computes its CPU reference.

Two M1-layout checkpoints, both seeded random weights in M1's own tensor layout:

* ``tiny-m1``, the embedded default (4 heads of 64, 2 KV heads, RoPE on 32 of 64 dims,
  post-norm, 7 lightning + 1 softmax layer);
* ``odd-heads``, the same with 6 lightning/query heads (ALiBi's interpolated slopes, not a
  power of two), 3 KV heads, RoPE on 16 of 64 dims, post-norm and 12 layers (a softmax layer
  at 8 and a lone lightning tail after it).
"""

from __future__ import annotations

import random
from pathlib import Path

REFERENCE = Path(__file__).parent / "reference" / "cpu_fp32.json"
# Context of the long-prompt engines: room for a 20K-token prompt and its continuation.
LONG_CONTEXT = 24_576

ODD_HEADS = {
    "num_attention_heads": 6,
    "num_key_value_heads": 3,
    "rotary_dim": 16,
    "postnorm": True,
    "num_hidden_layers": 12,
    "attn_type_list": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
}

# Lengths cross the Triton kernels' 32- and 64-token blocks and vLLM's state blocks.
EXACT_PROMPT_LENGTHS = (7, 130, 300, 517, 1100)
EXACT_NEW_TOKENS = 16


def model_dirs() -> dict[str, Path]:
    from m1_runtime.engine.checkpoints import build_variant, resolve_model

    return {"tiny-m1": resolve_model("tiny-m1"), "odd-heads": build_variant("odd-heads", ODD_HEADS)}


def weights_digest(model_dir: Path) -> str:
    """Hash of every tensor's name and bytes: the GPU machine must score the very weights the
    CPU reference was computed with."""
    import hashlib

    import torch
    from safetensors import safe_open

    h = hashlib.sha256()
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for name in sorted(f.keys()):
                raw = f.get_tensor(name).contiguous().view(-1).view(torch.uint8)
                h.update(name.encode() + raw.numpy().tobytes())
    return h.hexdigest()[:16]


def prompt(length: int, seed: int, vocab: int = 8192) -> list[int]:
    rng = random.Random(seed)
    # The tiny tokenizer's first five ids are special tokens.
    return [rng.randrange(5, vocab) for _ in range(length)]


def exact_prompts() -> list[list[int]]:
    return [prompt(n, seed=1000 + n) for n in EXACT_PROMPT_LENGTHS]
