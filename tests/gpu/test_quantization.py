"""Online quantization (fp8, experts_int8) of tiny-m1 loads through our model and stays close
to bf16. The first fp8 run on the H100 stopped in load_weights (the softmax attention's fp8
scales were reported missing); this keeps both methods loading and scoring. Throughput and the
M1-width table are benchmarks/gpu_quant.py's job."""

from __future__ import annotations

import statistics

import pytest

from tests.gpu import cases
from tests.gpu.engines import gpu_engine, prompt_logprobs
from tests.gpu.results import report
from tests.runtime.vllm_helpers import greedy, tokens_prompt

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# Mean |delta log-probability| of the prompt tokens against bf16. tiny-m1 is not chaotic (bf16
# compiled and eager differ by at most 0.015 on it), so a working quantization stays far below
# this; wrong scales or a layer left uninitialized put it at several nats.
MEAN_TOLERANCE = 0.5


@pytest.mark.parametrize("method", ["fp8", "experts_int8"])
def test_quantized_tiny_m1_loads_and_scores_close_to_bf16(
    method, tiny_dir, bf16_eager_long
) -> None:
    prompts = cases.exact_prompts()
    params = greedy(1, logprobs=0, prompt_logprobs=0)
    reference = bf16_eager_long.generate(
        [tokens_prompt(p) for p in prompts], params, use_tqdm=False
    )
    with gpu_engine(
        tiny_dir, "bfloat16", compiled=False, quantization=method, max_model_len=2048
    ) as llm:
        outs = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
    deltas = [
        abs(q - b)
        for p, qo, bo in zip(prompts, outs, reference, strict=True)
        for q, b in zip(prompt_logprobs(p, qo), prompt_logprobs(p, bo), strict=True)
    ]
    mean, worst = statistics.fmean(deltas), max(deltas)
    report("quantization", method=method, positions=len(deltas), mean=mean, max=worst)
    assert mean < MEAN_TOLERANCE, f"{method}: mean |delta logprob| {mean:.3f} against bf16"
