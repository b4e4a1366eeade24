"""What only the server process owns: presets and checkpoints, the engine's lifecycle,
admission and generation. vLLM's worker processes never import this package.

Callers import the engine and its types from here; nothing on this path loads vLLM until the
engine starts.
"""

from m1_runtime.engine.api import (
    EngineBusy,
    EngineConfig,
    EngineError,
    EngineNotReady,
    Fit,
    Generation,
    GenerationRequest,
    Progress,
    ProgressCallback,
    PromptTooLong,
    Sampling,
    Unsupported,
)
from m1_runtime.engine.engine import Engine

__all__ = [
    "Engine",
    "EngineBusy",
    "EngineConfig",
    "EngineError",
    "EngineNotReady",
    "Fit",
    "Generation",
    "GenerationRequest",
    "Progress",
    "ProgressCallback",
    "PromptTooLong",
    "Sampling",
    "Unsupported",
]
