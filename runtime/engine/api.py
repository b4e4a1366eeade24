"""The engine's public types: what callers hand in, what they get back, what can go wrong.

Kept apart from the engine itself so that tools (and a fake engine in their tests) can use them
without importing anything that loads vLLM.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from m1_runtime.chat.m1 import Message, ToolCall

State = Literal["stopped", "loading", "ready", "failed", "stopping"]


class EngineError(RuntimeError):
    """Base class: a request the engine could not serve; the message says why."""


class EngineBusy(EngineError):
    pass


class EngineNotReady(EngineError):
    pass


class PromptTooLong(EngineError):
    pass


class Unsupported(EngineError):
    """A request option this engine's platform cannot serve safely."""


@dataclass(frozen=True)
class Fit:
    """How a prompt and its answer budget share the context (`Engine.fit`): the one place the
    room for an input is worked out, so tools ask instead of counting tokens themselves."""

    prompt_tokens: int
    answer_budget: int
    context: int  # the engine's max_model_len

    @property
    def spare(self) -> int:
        """Tokens left once the prompt and the whole answer budget are placed; below 0: the two
        do not fit together."""
        return self.context - self.prompt_tokens - self.answer_budget

    @property
    def room(self) -> int:
        """Tokens the context leaves for any answer after the prompt."""
        return self.context - self.prompt_tokens


@dataclass(frozen=True)
class EngineConfig:
    model: str | None = None  # preset name or checkpoint dir; None is the embedded default
    cache_dir: Path | None = None
    dtype: str = "auto"
    max_model_len: int | None = 32768
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    # None: "mp" when there are several ranks; "ray" runs them on a Ray cluster (several nodes).
    distributed_executor_backend: str | None = None
    quantization: str | None = None  # None, "fp8" or "experts_int8": online, from bf16 weights
    memory_fraction: float = 0.3
    kv_cache_gib: float | None = None
    enforce_eager: bool | None = None  # None: eager on CPU, compiled (CUDA graphs) on GPUs
    # Reuse the KV blocks (and lightning states) of a shared prompt prefix: the instructions of
    # every map step of a long document, a conversation's earlier turns.
    prefix_caching: bool = True
    # None: what the engine runs together, read from vLLM once it has started: its max_num_seqs
    # (128 unless set) bounded by the full-context requests its KV cache holds (batch_limit).
    max_concurrent: int | None = None
    max_queue: int = 32
    log_level: str = "INFO"


@dataclass(frozen=True)
class Sampling:
    # None: the checkpoint's recommended value (its generation_config.json), else M1's.
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass
class GenerationRequest:
    messages: list[Message]
    max_tokens: int = 512
    tools: list[dict[str, Any]] | None = None
    sampling: Sampling = field(default_factory=Sampling)
    json_schema: dict[str, Any] | None = None
    # True: start inside <think>; False: skip reasoning; None: the model decides.
    # A JSON schema always turns thinking off, since the grammar holds from the first token.
    thinking: bool | None = None


@dataclass
class Progress:
    phase: Literal["loading", "queued", "generating"]
    tokens: int = 0
    max_tokens: int = 0
    tail: str = ""
    message: str = ""


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass
class Generation:
    text: str  # the answer, reasoning and tool-call blocks taken out
    reasoning: str
    raw_text: str
    tool_calls: list[ToolCall]
    tool_call_errors: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "abort"
    queue_s: float  # waiting for an admission slot
    engine_s: float  # from handing the request to vLLM until its last output
    total_s: float


def thinking_of(request: GenerationRequest) -> bool | None:
    """The request's thinking choice as rendered: a JSON schema always turns it off."""
    return False if request.json_schema is not None else request.thinking
