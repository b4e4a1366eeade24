"""Start and stop real vLLM engines on the CPU for the model tests."""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def engine_args(model: Path, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        model=str(model),
        dtype="float32",  # bf16 kills the CPU worker with SIGILL on these machines
        gpu_memory_utilization=0.08,
        max_model_len=4096,
        max_num_seqs=16,
        seed=0,
        # Eager start-up takes ~20 s here instead of ~35 s with torch.compile; the compiled
        # path is exercised by the model tests that ask for it.
        enforce_eager=True,
    )
    args.update(overrides)
    return args


@contextlib.contextmanager
def running_engine(model: Path, **overrides: Any) -> Iterator[Any]:
    from vllm import LLM

    llm = LLM(**engine_args(model, **overrides))
    try:
        yield llm
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


def random_prompt(length: int, seed: int, vocab: int = 8192) -> list[int]:
    rng = random.Random(seed)
    # Skip the five special tokens at the start of the tiny tokenizer's vocabulary.
    return [rng.randrange(5, vocab) for _ in range(length)]


def greedy(max_tokens: int, **kwargs: Any) -> Any:
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, **kwargs)


def tokens_prompt(ids: list[int]) -> dict[str, list[int]]:
    return {"prompt_token_ids": ids}
