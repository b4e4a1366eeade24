"""vLLM plugin entry point (`vllm.general_plugins`): makes MiniMax-M1 checkpoints loadable.

vLLM calls :func:`register` in every process it starts (the API process and each worker), so
it must be cheap, idempotent and import nothing heavy until a model is actually built.
"""

from __future__ import annotations

from m1_runtime.model.op_names import LIGHTNING_OP

ARCHITECTURES = ("MiniMaxM1ForCausalLM", "MiniMaxText01ForCausalLM", "MiniMaxForCausalLM")
MODEL_MODULE = "m1_runtime.model.minimax_m1"
MODEL_CLASS = f"{MODEL_MODULE}:MiniMaxM1ForCausalLM"
# M1's layers with no lightning layer at all (a baseline for benchmarks): not a hybrid model.
SOFTMAX_ARCHITECTURE = "MiniMaxM1SoftmaxForCausalLM"
# Parsers for `vllm serve --tool-call-parser minimax_m1 --reasoning-parser minimax_m1`
# ("minimax" is the name vLLM's own M1 tool parser had until 0.23, so old commands keep working).
PARSERS_MODULE = "m1_runtime.model.openai_parsers"
TOOL_PARSER_NAMES = ("minimax_m1", "minimax")
REASONING_PARSER_NAMES = ("minimax_m1",)


def register() -> None:
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.config import CompilationConfig

    from m1_runtime.model.config import MiniMaxM1Config

    # Lets vLLM read `model_type: "minimax_m1"` config.json files without trust_remote_code.
    AutoConfig.register(MiniMaxM1Config.model_type, MiniMaxM1Config, exist_ok=True)
    for arch in ARCHITECTURES:
        # A lazy "module:Class" string: the model module (and torch ops) load only when used.
        ModelRegistry.register_model(arch, MODEL_CLASS)
    ModelRegistry.register_model(SOFTMAX_ARCHITECTURE, f"{MODEL_MODULE}:{SOFTMAX_ARCHITECTURE}")
    _register_parsers()
    # The lightning op must split compiled graphs like vLLM's own attention ops do.
    if LIGHTNING_OP not in CompilationConfig._attention_ops:
        CompilationConfig._attention_ops.append(LIGHTNING_OP)


def _register_parsers() -> None:
    """Lazy entries (the module loads when a server asks for the name), each only while the
    name is free, so a parser vLLM itself ships under that name one day wins."""
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    for manager, names, cls in (
        (ToolParserManager, TOOL_PARSER_NAMES, "MiniMaxM1ToolParser"),
        (ReasoningParserManager, REASONING_PARSER_NAMES, "MiniMaxM1ReasoningParser"),
    ):
        taken = set(manager.list_registered())
        for name in names:
            if name not in taken:
                manager.register_lazy_module(name, PARSERS_MODULE, cls)
