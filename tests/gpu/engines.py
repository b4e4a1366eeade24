"""vLLM engines for the GPU suite (one at a time, each in its own engine process), and what is
read off their outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.runtime.vllm_helpers import running_engine


@contextlib.contextmanager
def gpu_engine(model: Path, dtype: str, compiled: bool, **overrides: Any) -> Iterator[Any]:
    """`compiled`: torch.compile with CUDA graphs (vLLM's default); else eager."""
    args: dict[str, Any] = dict(
        dtype=dtype,
        enforce_eager=not compiled,
        gpu_memory_utilization=0.15,
        max_model_len=4096,
        max_num_seqs=64,
        enable_prefix_caching=False,
    )
    if compiled:
        # The batch sizes the suite decodes at; fewer graphs than vLLM's default list start
        # faster and cover the same paths (a padded batch replays the next larger graph).
        args["compilation_config"] = {"cudagraph_capture_sizes": [1, 2, 4, 8, 16, 32, 64]}
    args.update(overrides)
    with running_engine(model, **args) as llm:
        yield llm


def completions(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


def chosen_logprobs(output) -> list[float]:
    """Log-probability of each generated token, as the engine computed it."""
    completion = output.outputs[0]
    return [
        step[t].logprob for t, step in zip(completion.token_ids, completion.logprobs, strict=True)
    ]


def prompt_logprobs(prompt: list[int], output) -> list[float]:
    """Log-probability of prompt token i (i >= 1) given tokens < i."""
    return [step[t].logprob for t, step in zip(prompt[1:], output.prompt_logprobs[1:], strict=True)]


def top2_gap(step) -> float | None:
    """Log-probability gap between the two best tokens of one step (logprobs >= 2 asked)."""
    top = sorted((lp.logprob for lp in step.values()), reverse=True)
    return top[0] - top[1] if len(top) > 1 else None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
