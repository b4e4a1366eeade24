"""What the engine reads off a checkpoint and says about its model: recommended sampling, the
usable context, and the model card shown as `m1://model`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("m1.engine")

# MiniMax-M1's recommended sampling, for checkpoints that recommend none.
M1_SAMPLING = {"temperature": 1.0, "top_p": 0.95, "json_repetition_penalty": 1.0}


def recommended_sampling(model_dir: Path) -> dict[str, float]:
    """temperature, top_p and json_repetition_penalty (for guided JSON only) from the
    checkpoint's generation_config.json, M1's otherwise."""
    try:
        config = json.loads((model_dir / "generation_config.json").read_text())
    except (OSError, ValueError):
        config = {}
    return {k: float(config.get(k, v)) for k, v in M1_SAMPLING.items()}


def context_length(model_dir: Path, wanted: int | None) -> int | None:
    """`wanted`, cut to what the checkpoint was trained for (vLLM refuses a longer context)."""
    try:
        trained = int(
            json.loads((model_dir / "config.json").read_text())["max_position_embeddings"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return wanted
    if wanted is not None and wanted > trained:
        log.info("engine: context %d cut to the model's %d tokens", wanted, trained)
        return trained
    return wanted


def model_card(
    model_dir: Path,
    model_config: Any,
    dtype: str,
    device: str,
    parallel: dict[str, int],
    chat_format: dict[str, Any],
    sampling: dict[str, float],
) -> dict[str, Any]:
    """The loaded model as `m1://model` shows it, read off vLLM's model config."""
    import vllm

    hf = model_config.hf_config
    types = list(getattr(hf, "attn_type_list", []) or [])
    return {
        "model_dir": str(model_dir),
        "architecture": (getattr(hf, "architectures", None) or ["?"])[0],
        "model_type": getattr(hf, "model_type", "?"),
        "hidden_size": getattr(hf, "hidden_size", None),
        "num_layers": getattr(hf, "num_hidden_layers", None),
        "linear_attention_layers": types.count(0),
        "softmax_attention_layers": types.count(1),
        "num_experts": getattr(hf, "num_local_experts", None),
        "experts_per_token": getattr(hf, "num_experts_per_tok", None),
        "vocab_size": getattr(hf, "vocab_size", None),
        "context_length": int(model_config.max_model_len),
        "dtype": dtype,
        "device": device,
        **parallel,
        "vllm_version": vllm.__version__,
        **chat_format,
        "default_sampling": sampling,
    }
