"""Plain `vllm.LLM(model=DIR)` finds the model through the plugin entry point, and refuses a
checkpoint with missing or unknown tensors, naming them, instead of serving random holes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from m1_runtime.engine.checkpoints import INDEX_FILE, resolve_model

pytestmark = pytest.mark.slow

# A fresh interpreter that imports nothing of ours: only the entry point can register the model.
LOAD = (
    "import sys\n"
    "from vllm import LLM\n"
    "if __name__ == '__main__':\n"
    "    LLM(model=sys.argv[1], dtype='float32', gpu_memory_utilization=0.05, max_model_len=512)\n"
    "    print('LOADED')\n"
)


def _copy_with(tmp: Path, edit) -> Path:
    """Copy the default checkpoint, then let `edit(tensors)` change one shard's tensors."""
    src = resolve_model("tiny-m1")
    dest = tmp / "ckpt"
    shutil.copytree(src, dest)
    index = json.loads((dest / INDEX_FILE).read_text())
    shard = dest / index["weight_map"]["model.layers.3.self_attn.norm.weight"]
    tensors = load_file(shard)
    edit(tensors)
    save_file(tensors, shard)
    # The edited shard's entries are exactly its tensors now; every other shard's stay.
    index["weight_map"] = {
        name: file for name, file in index["weight_map"].items() if file != shard.name
    }
    index["weight_map"].update({name: shard.name for name in tensors})
    (dest / INDEX_FILE).write_text(json.dumps(index))
    return dest


def _load(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", LOAD, str(path)],
        cwd="/",
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_missing_and_unknown_tensors_are_named(tmp_path):
    missing = _copy_with(tmp_path / "a", lambda t: t.pop("model.layers.3.self_attn.norm.weight"))
    unknown = _copy_with(
        tmp_path / "b",
        lambda t: t.update({"model.layers.3.self_attn.bogus.weight": t[next(iter(t))].clone()}),
    )
    runs = {"missing": _load(missing), "unknown": _load(unknown)}
    results = {name: run.communicate(timeout=600) for name, run in runs.items()}
    for name, run in runs.items():
        out, err = results[name]
        assert run.returncode != 0 and "LOADED" not in out, f"{name}: loaded anyway"
    assert "missing weights" in results["missing"][1]
    assert "model.layers.3.self_attn.norm.weight" in results["missing"][1]
    assert "no place in MiniMax-M1" in results["unknown"][1]
    assert "model.layers.3.self_attn.bogus.weight" in results["unknown"][1]


def test_quantization_scales_are_not_required_but_everything_else_is():
    """fp8 gives the softmax attention q/k/v/prob scales that a bf16 checkpoint lacks (the first
    H100 fp8 run stopped on exactly these); any other unfilled parameter is still an error."""
    from m1_runtime.model.minimax_m1 import missing_weights

    layer = "model.layers.7.self_attn"
    scales = [f"{layer}.attn.{s}_scale" for s in ("q", "k", "v", "prob")]
    params = [*scales, f"{layer}.qkv_proj.weight", f"{layer}.o_proj.weight", "lm_head.weight"]
    loaded = {f"{layer}.qkv_proj.weight"}
    assert missing_weights(params, loaded, tied_embeddings=True) == [f"{layer}.o_proj.weight"]
    assert missing_weights(params, loaded, tied_embeddings=False) == [
        "lm_head.weight",
        f"{layer}.o_proj.weight",
    ]
    # A scale of another module (an fp8 checkpoint's weight scale) is not excused.
    assert missing_weights([f"{layer}.o_proj.weight_scale"], set(), True) == [
        f"{layer}.o_proj.weight_scale"
    ]
