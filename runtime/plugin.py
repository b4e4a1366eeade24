"""vLLM plugin entry point (`vllm.general_plugins`): makes MiniMax-M1 checkpoints loadable.

vLLM calls :func:`register` in every process it starts (the API process and each worker), so
it must be cheap, idempotent and import nothing heavy until a model is actually built.
"""

from __future__ import annotations

ARCHITECTURES = ("MiniMaxM1ForCausalLM", "MiniMaxText01ForCausalLM", "MiniMaxForCausalLM")
MODEL_CLASS = "runtime.model:MiniMaxM1ForCausalLM"
# M1's layers with no lightning layer at all (a baseline for benchmarks): not a hybrid model.
SOFTMAX_ARCHITECTURE = "MiniMaxM1SoftmaxForCausalLM"
# The custom op runtime.lightning registers in vLLM's op library (torch.ops.vllm.<name>).
LIGHTNING_OP_NAME = "m1_lightning_attention"
LIGHTNING_OP = f"vllm::{LIGHTNING_OP_NAME}"


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.config import CompilationConfig

    from runtime.config import MiniMaxM1Config

    # Lets vLLM read `model_type: "minimax_m1"` config.json files without trust_remote_code.
    AutoConfig.register(MiniMaxM1Config.model_type, MiniMaxM1Config, exist_ok=True)
    for arch in ARCHITECTURES:
        # A lazy "module:Class" string: the model module (and torch ops) load only when used.
        ModelRegistry.register_model(arch, MODEL_CLASS)
    ModelRegistry.register_model(SOFTMAX_ARCHITECTURE, f"runtime.model:{SOFTMAX_ARCHITECTURE}")
    # The lightning op must split compiled graphs like vLLM's own attention ops do.
    if LIGHTNING_OP not in CompilationConfig._attention_ops:
        CompilationConfig._attention_ops.append(LIGHTNING_OP)
