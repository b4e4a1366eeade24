"""The model inside vLLM on the GPU against the CPU: float32 exactness, then bf16 compiled
(torch.compile + CUDA graphs) against bf16 eager."""

from __future__ import annotations

import json
import statistics

import pytest

from tests.gpu import cases
from tests.gpu.engines import (
    chosen_logprobs,
    common_prefix,
    completions,
    gpu_engine,
    prompt_logprobs,
    top2_gap,
)
from tests.gpu.results import report
from tests.runtime.vllm_helpers import greedy, tokens_prompt

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

FP32_TOLERANCE = 2e-3  # prompt log-probabilities, GPU float32 against CPU float32
BF16_STEPS = 32
# A parting of greedy paths counts as a near tie when the two best tokens were closer than
# this many times the largest log-probability difference seen before any parting.
NEAR_TIE = 4


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(cases.REFERENCE.read_text())


@pytest.fixture(scope="module")
def models():
    return cases.model_dirs()


# vLLM 0.26 drives hybrid models with the old (V1) model runner by default; "v2" forces the new
# one, which 0.32 makes the default and 0.34 the only one. Each model under one runner keeps
# the suite to one engine a case (on 2026-12-04 tiny-m1 gave identical numbers under both).
@pytest.mark.parametrize(("name", "runner"), [("tiny-m1", "default"), ("odd-heads", "v2")])
def test_float32_eager_matches_cpu(name, runner, models, reference, monkeypatch, request) -> None:
    if runner == "v2":
        monkeypatch.setenv("VLLM_USE_V2_MODEL_RUNNER", "1")
    assert cases.weights_digest(models[name]) == reference["weights"][name], (
        "these weights are not the ones the CPU reference scored: rebuild the reference with "
        "python -m tests.gpu.make_reference"
    )
    prompts = cases.exact_prompts()
    expected = reference["models"][name]
    params = greedy(cases.EXACT_NEW_TOKENS, logprobs=0, prompt_logprobs=0)
    if name == "tiny-m1":  # the session's shared float32 eager engine (conftest.py)
        llm = request.getfixturevalue("fp32_eager_tiny")
        outs = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
    else:
        with gpu_engine(models[name], "float32", compiled=False, max_model_len=2048) as llm:
            outs = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
    worst_prompt, worst_greedy, same = 0.0, 0.0, []
    for p, out, ref in zip(prompts, outs, expected, strict=True):
        got = prompt_logprobs(p, out)
        worst_prompt = max(
            worst_prompt,
            max(abs(a - b) for a, b in zip(got, ref["prompt_logprobs"][1:], strict=True)),
        )
        tokens = list(out.outputs[0].token_ids)
        same.append(tokens == ref["greedy"])
        n = common_prefix(tokens, ref["greedy"])
        lps = chosen_logprobs(out)[:n]
        if n:
            worst_greedy = max(
                worst_greedy,
                max(abs(a - b) for a, b in zip(lps, ref["greedy_logprobs"][:n], strict=True)),
            )
    report(
        "fp32-exactness",
        model=name,
        runner=runner,
        prompts=len(prompts),
        lengths=list(cases.EXACT_PROMPT_LENGTHS),
        max_prompt_logprob_diff=worst_prompt,
        max_greedy_logprob_diff=worst_greedy,
        greedy_identical=sum(same),
        cpu_vllm=reference["vllm"],
    )
    assert worst_prompt < FP32_TOLERANCE, f"prompt logprobs differ from the CPU by {worst_prompt}"
    assert all(same), f"greedy continuations differ from the CPU's: {same}"


def test_bf16_compiled_matches_bf16_eager(models, bf16_eager_long) -> None:
    """bf16 with torch.compile + CUDA graphs against bf16 eager. Inductor fuses and rounds
    differently from eager kernels, so log-probabilities differ at bf16's resolution; a random
    model's next-token distribution is nearly flat (top-2 gaps of 1e-3 are common), so greedy
    paths may part where the two best tokens are that close. Every parting must be such a near
    tie; the count of identical continuations is reported."""
    prompts = [cases.prompt(n, seed=2000 + n) for n in (5, 33, 64, 129, 400, 777, 1500, 3000)]
    params = greedy(BF16_STEPS, logprobs=2)
    batch = [tokens_prompt(p) for p in prompts]
    runs = {False: bf16_eager_long.generate(batch, params, use_tqdm=False)}
    with gpu_engine(models["tiny-m1"], "bfloat16", compiled=True) as llm:
        runs[True] = llm.generate(batch, params, use_tqdm=False)
    eager, graphs = completions(runs[False]), completions(runs[True])
    identical = sum(a == b for a, b in zip(eager, graphs, strict=True))
    diffs, partings = [], []
    for e, g in zip(runs[False], runs[True], strict=True):
        n = common_prefix(list(e.outputs[0].token_ids), list(g.outputs[0].token_ids))
        diffs += [
            abs(a - b) for a, b in zip(chosen_logprobs(e)[:n], chosen_logprobs(g)[:n], strict=True)
        ]
        if n < BF16_STEPS:
            partings.append({"step": n, "eager_top2_gap": top2_gap(e.outputs[0].logprobs[n])})
    report(
        "bf16-compiled-vs-eager",
        prompts=len(prompts),
        steps=BF16_STEPS,
        identical=identical,
        partings=partings,
        max_logprob_diff=max(diffs),
        median_logprob_diff=statistics.median(diffs),
    )
    assert statistics.median(diffs) < 0.01, "compiled and eager bf16 differ beyond rounding"
    near_tie = NEAR_TIE * max(max(diffs), 1e-3)
    assert all(p["eager_top2_gap"] < near_tie for p in partings), partings
