"""Every serving path of the model on the GPU: a prompt longer than 16K tokens, chunked
prefill, mixed decode and prefill batches with many state slots in use, and prefix caching."""

from __future__ import annotations

import statistics

import pytest

from tests.gpu import cases
from tests.gpu.engines import (
    chosen_logprobs,
    common_prefix,
    completions,
    gpu_engine,
    prompt_logprobs,
)
from tests.gpu.results import report
from tests.runtime.vllm_helpers import greedy, tokens_prompt

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

LONG = 20_000  # > 16K: one unchunked prefill takes the Gluon kernel (bf16, >= 8K tokens)


def test_long_prompt_gluon_and_chunked_prefill_agree(tiny_dir, bf16_eager_long) -> None:
    """The same 20K-token prompt prefilled in one step (Gluon kernel for the full blocks) and in
    2K-token chunks (Triton kernel, state carried between chunks), then decoded: both must give
    the same continuation and nearly the same prompt log-probabilities (bf16 rounding along two
    kernel paths; on 2026-12-04 both were also within a mean 2.6e-3 of float32 eager). Eager:
    the kernel path is chosen inside the attention op, which torch.compile leaves as it is
    (prefill never runs under CUDA graphs), and two compiled engines cost about 80 s more."""
    long = cases.prompt(LONG, seed=7)
    params = greedy(16, logprobs=0, prompt_logprobs=0)
    runs = {"one-step": bf16_eager_long.generate([tokens_prompt(long)], params, use_tqdm=False)[0]}
    with gpu_engine(
        tiny_dir,
        "bfloat16",
        compiled=False,
        max_model_len=cases.LONG_CONTEXT,
        max_num_batched_tokens=2048,
        max_num_seqs=4,
    ) as llm:
        runs["chunked"] = llm.generate([tokens_prompt(long)], params, use_tqdm=False)[0]
    lp = {k: prompt_logprobs(long, v) for k, v in runs.items()}
    tokens = {k: list(v.outputs[0].token_ids) for k, v in runs.items()}
    gaps = [abs(a - b) for a, b in zip(lp["one-step"], lp["chunked"], strict=True)]
    report(
        "long-prompt",
        tokens=LONG,
        one_step_vs_chunked_max_prompt_logprob_diff=max(gaps),
        one_step_vs_chunked_mean_prompt_logprob_diff=statistics.fmean(gaps),
        continuation_one_step_vs_chunked=common_prefix(tokens["one-step"], tokens["chunked"]),
    )
    assert tokens["one-step"] == tokens["chunked"]
    assert max(gaps) < 0.1, max(gaps)
    assert statistics.fmean(gaps) < 0.02


def test_concurrent_requests_equal_each_alone(tiny_dir) -> None:
    """32 requests of different lengths at once, with a 512-token step budget: long prompts
    prefill in chunks while short ones decode, so steps mix decodes and prefills and 32 state
    slots are live. Each must equal the same request run alone (float32, so that a batched
    matmul's rounding cannot flip a greedy token; compiled with CUDA graphs)."""
    lengths = [3 + (i * 397) % 3000 for i in range(32)]
    prompts = [cases.prompt(n, seed=3000 + i) for i, n in enumerate(lengths)]
    params = greedy(24, logprobs=0)
    with gpu_engine(tiny_dir, "float32", compiled=True, max_num_batched_tokens=512) as llm:
        together = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
        alone = [llm.generate([tokens_prompt(p)], params, use_tqdm=False)[0] for p in prompts]
    same = [a == b for a, b in zip(completions(together), completions(alone), strict=True)]
    gap = max(
        max(abs(x - y) for x, y in zip(chosen_logprobs(a), chosen_logprobs(b), strict=True))
        for a, b, ok in zip(together, alone, same, strict=True)
        if ok
    )
    report(
        "isolation",
        requests=len(prompts),
        lengths=[min(lengths), max(lengths)],
        identical=sum(same),
        max_logprob_diff=gap,
    )
    assert all(same), f"{same.count(False)} requests changed when run with others"
    assert gap < 1e-3


def test_prefix_caching_on_equals_off(tiny_dir, fp32_eager_tiny) -> None:
    """Requests sharing a 1,500-token prefix: with prefix caching the later ones reuse cached
    blocks (and the lightning states saved at block boundaries) and must still give the outputs
    of an engine without caching. Eager float32: what is tested is the scheduler and state
    bookkeeping, which compilation does not touch."""
    shared = cases.prompt(1500, seed=11)
    prompts = [shared + cases.prompt(20 + 37 * i, seed=40 + i) for i in range(6)]
    params = greedy(24, logprobs=0)
    runs, cached = {}, {}

    def run(llm, caching: bool) -> None:
        first = llm.generate([tokens_prompt(prompts[0])], params, use_tqdm=False)
        rest = llm.generate([tokens_prompt(p) for p in prompts[1:]], params, use_tqdm=False)
        runs[caching] = first + rest
        cached[caching] = [o.num_cached_tokens or 0 for o in rest]

    run(fp32_eager_tiny, False)  # the session's shared engine, caching off (conftest.py)
    with gpu_engine(tiny_dir, "float32", compiled=False, enable_prefix_caching=True) as llm:
        run(llm, True)
    same = [a == b for a, b in zip(completions(runs[False]), completions(runs[True]), strict=True)]
    report(
        "prefix-caching",
        requests=len(prompts),
        shared_prefix=len(shared),
        identical=sum(same),
        cached_tokens=cached[True],
    )
    assert min(cached[True]) > 0, "prefix caching never hit"
    assert all(same), same
