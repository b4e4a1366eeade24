"""smol-m1-hybrid: SmolLM2-135M-Instruct in M1's hybrid layout, from the GGUF plus a small delta.

The smol-m1 conversion (:mod:`m1_runtime.engine.smol_m1`) is all softmax. Here most of its layers
become lightning layers. A lightning layer starts from the softmax layer it replaces:

* ``qkv_proj`` from ``q_proj``/``k_proj``/``v_proj``, laid out per head as ``[q | k | v]`` with
  the KV heads expanded (query head h reads KV head ``h // (heads / kv_heads)``, as GQA does);
* ``out_proj`` = ``o_proj``; a fresh ``output_gate`` of zeros (sigmoid 0.5 everywhere until
  trained); ``norm`` weights of one; the slopes are M1's, derived from the config (not stored).

Training (``scripts/linearize``) changes only low-rank factors and a few small tensors, saved as a
*delta*: a folder with ``delta.safetensors`` and ``delta.json`` (the manifest). Applying it is
``W <- W + B @ A`` for each low-rank pair (the LoRA scale is folded into B when saved) and a
plain replacement for each full tensor. The manifest names the source it was trained on, and
:func:`apply_delta` refuses any other source: a delta only means something on its own weights.

Delta tensor names are checkpoint names plus a suffix: ``<weight>.lora_A`` ``[r, in]``,
``<weight>.lora_B`` ``[out, r]``, or ``<weight>`` itself for a full replacement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

ARCHITECTURE = "MiniMaxM1ForCausalLM"
DELTA_FORMAT = 1
DELTA_TENSORS = "delta.safetensors"
DELTA_MANIFEST = "delta.json"
LORA_A, LORA_B = ".lora_A", ".lora_B"


class DeltaMismatch(ValueError):
    """A delta that does not fit the weights it is applied to."""


# ---------------------------------------------------------------------------------------------
# Layout: which layers are lightning, and how a lightning layer starts


def lightning_init(tensors: dict[str, torch.Tensor], layer: int, config: dict[str, Any]) -> dict:
    """The lightning tensors that replace softmax layer ``layer`` of an M1-layout tensor dict."""
    heads, kv_heads = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    d = int(config.get("head_dim") or config["hidden_size"] // heads)
    hidden = int(config["hidden_size"])
    p = f"model.layers.{layer}.self_attn"
    q = tensors[f"{p}.q_proj.weight"].view(heads, d, hidden)
    group = heads // kv_heads
    # repeat_interleave: KV head j serves query heads j*group .. j*group+group-1 (GQA's grouping).
    k = tensors[f"{p}.k_proj.weight"].view(kv_heads, d, hidden).repeat_interleave(group, dim=0)
    v = tensors[f"{p}.v_proj.weight"].view(kv_heads, d, hidden).repeat_interleave(group, dim=0)
    qkv = torch.cat([q, k, v], dim=1).reshape(3 * heads * d, hidden)
    return {
        f"{p}.qkv_proj.weight": qkv.contiguous(),
        f"{p}.output_gate.weight": torch.zeros(heads * d, hidden, dtype=qkv.dtype),
        f"{p}.out_proj.weight": tensors[f"{p}.o_proj.weight"].clone(),
        f"{p}.norm.weight": torch.ones(heads * d, dtype=qkv.dtype),
    }


def truncate(tensors: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """The first ``num_layers`` layers (toy runs and their tests use a few layers)."""

    def keep(name: str) -> bool:
        if not name.startswith("model.layers."):
            return True
        return int(name.split(".")[2]) < num_layers

    return {n: t for n, t in tensors.items() if keep(n)}


def hybrid_config(base: dict[str, Any], attn_type_list: list[int]) -> dict[str, Any]:
    """smol-m1's config with the given layer pattern (0 = lightning, 1 = softmax)."""
    config = dict(base)
    config["num_hidden_layers"] = len(attn_type_list)
    config["attn_type_list"] = [int(t) for t in attn_type_list]
    config.pop("layer_types", None)  # MiniMaxM1Config derives it from attn_type_list
    # vLLM treats a model with any lightning layer as hybrid: the hybrid class, not the softmax one.
    config["architectures"] = [
        ARCHITECTURE if 0 in attn_type_list else "MiniMaxM1SoftmaxForCausalLM"
    ]
    return config


def hybrid_tensors(
    base: dict[str, torch.Tensor], config: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """M1-layout tensors of a softmax checkpoint with ``config``'s lightning layers initialised
    from the softmax layers they replace (before any delta), in checkpoint order."""
    out: dict[str, torch.Tensor] = {}
    types = config["attn_type_list"]
    for name, tensor in truncate(base, len(types)).items():
        parts = name.split(".")
        if (
            name.startswith("model.layers.")
            and types[int(parts[2])] == 0
            and parts[3] == "self_attn"
        ):
            if parts[4] == "q_proj":  # the four softmax tensors give way to the lightning four
                out.update(lightning_init(base, int(parts[2]), config))
            continue
        out[name] = tensor
    return out


# ---------------------------------------------------------------------------------------------
# The delta


def save_delta(
    folder: Path, tensors: dict[str, torch.Tensor], manifest: dict[str, Any], dtype: str
) -> Path:
    """Write ``delta.safetensors`` (in ``dtype``) and ``delta.json``; returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = getattr(torch, dtype)
    data = {n: t.detach().to("cpu", store).contiguous() for n, t in sorted(tensors.items())}
    save_file(data, str(folder / DELTA_TENSORS), metadata={"format": "pt"})
    manifest = manifest | {
        "format": DELTA_FORMAT,
        "dtype": dtype,
        "tensors": {n: list(t.shape) for n, t in data.items()},
        "bytes": (folder / DELTA_TENSORS).stat().st_size,
    }
    (folder / DELTA_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


def load_delta(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors in float32, manifest) of a delta folder."""
    from safetensors.torch import load_file

    folder = Path(folder)
    manifest = json.loads((folder / DELTA_MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != DELTA_FORMAT:
        raise DeltaMismatch(f"{folder}: delta format {manifest.get('format')}, not {DELTA_FORMAT}")
    tensors = {n: t.to(torch.float32) for n, t in load_file(str(folder / DELTA_TENSORS)).items()}
    if {n: list(t.shape) for n, t in tensors.items()} != manifest["tensors"]:
        raise DeltaMismatch(f"{folder}: delta.safetensors does not match its manifest")
    return tensors, manifest


def apply_delta(
    tensors: dict[str, torch.Tensor], delta: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A new tensor dict with every low-rank pair added and every full tensor replaced."""
    out = dict(tensors)
    for name, t in delta.items():
        if name.endswith(LORA_B):
            continue
        if name.endswith(LORA_A):
            target = name.removesuffix(LORA_A)
            b = delta.get(target + LORA_B)
            if target not in out or b is None:
                raise DeltaMismatch(f"low-rank pair for {target} has no weight or no B factor")
            update = b.to(torch.float32) @ t.to(torch.float32)
            if update.shape != out[target].shape:
                raise DeltaMismatch(f"{target}: update {update.shape} for {out[target].shape}")
            out[target] = (out[target].to(torch.float32) + update).to(out[target].dtype)
            continue
        if name not in out or out[name].shape != t.shape:
            raise DeltaMismatch(f"full tensor {name} {tuple(t.shape)} fits no weight")
        out[name] = t.to(out[name].dtype).clone()
    orphans = [
        n for n in delta if n.endswith(LORA_B) and n.removesuffix(LORA_B) + LORA_A not in delta
    ]
    if orphans:
        raise DeltaMismatch(f"B factors without A: {orphans}")
    return out


# ---------------------------------------------------------------------------------------------
# Building a checkpoint


def build_tensors(
    base_tensors: dict[str, torch.Tensor],
    base_config: dict[str, Any],
    delta_folder: Path,
    origin: str | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, config) of the hybrid model: smol-m1's tensors, the manifest's layer pattern,
    lightning init, then the delta. ``origin`` (the source identity) must match the manifest's
    when given."""
    delta, manifest = load_delta(delta_folder)
    if origin is not None and manifest.get("source") != origin:
        raise DeltaMismatch(
            f"the delta was trained on {manifest.get('source')!r}, this source is {origin!r}"
        )
    config = hybrid_config(base_config, manifest["attn_type_list"])
    return apply_delta(hybrid_tensors(base_tensors, config), delta), config


def write_checkpoint(out: Path, source: Path, delta_folder: Path, progress: bool = True) -> None:
    """Write the hybrid checkpoint (config, one safetensors file, tokenizer) into ``out``."""
    from m1_runtime.engine import smol_m1

    if progress:
        # stderr only: on stdio, stdout is the MCP stream.
        sys.stderr.write(f"smol-m1-hybrid: converting {source.name} and applying {delta_folder}\n")
    model, tokenizer = smol_m1.load_source(source)
    base_config = smol_m1.m1_config(model.config, tokenizer)
    base = smol_m1.m1_tensors(model.state_dict(), base_config)
    tensors, config = build_tensors(
        base, base_config, delta_folder, smol_m1.source_identity(source)
    )
    smol_m1.save_m1_checkpoint(out, config, tensors, tokenizer, "smol-m1-hybrid")
