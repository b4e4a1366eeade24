"""smol-m1-hybrid: the preset built from the installed GGUF plus the committed delta, run by our
plugin in vLLM, against the training-side model with the same delta (scripts/linearize)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from m1_runtime.engine import smol_m1, smol_m1_hybrid
from m1_runtime.engine.checkpoints import (
    ensure_smol_m1_hybrid,
    expected_tensors,
    is_complete,
    resolve_model,
    smol_hybrid_delta_dir,
)
from scripts.linearize import cli, data
from tests.runtime.vllm_helpers import greedy, running_engine, tokens_prompt

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4  # prompt log-probabilities, float32 on both sides
TEXTS = [
    "What is 23 + 45? Answer with the number only.",
    "Review this code and point out the bug:\n\ndef last(xs):\n    return xs[len(xs)]",
    "Write a short paragraph about lighthouses. " * 6,  # > 64 tokens: crosses a lightning block
]


@pytest.fixture(scope="module")
def hybrid_dir():
    return ensure_smol_m1_hybrid()


def test_preset_builds_with_the_manifests_layout(hybrid_dir) -> None:
    assert is_complete(hybrid_dir)
    assert resolve_model("smol-m1-hybrid") == hybrid_dir  # cached: the second call builds nothing
    _, manifest = smol_m1_hybrid.load_delta(smol_hybrid_delta_dir())
    config = json.loads((hybrid_dir / "config.json").read_text())
    assert config["architectures"] == ["MiniMaxM1ForCausalLM"]
    assert config["attn_type_list"] == manifest["attn_type_list"]
    kinds = config["attn_type_list"]
    assert set(kinds) == {0, 1} and kinds.count(0) >= kinds.count(1)  # a hybrid, half lightning+
    # Exactly the tensors (names and shapes) our loader expects for that layout.
    shapes = {}
    for shard in hybrid_dir.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            shapes |= {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    assert shapes == expected_tensors(config)
    # Small enough to commit: the delta, not the model.
    assert manifest["bytes"] < 8 << 20


def test_vllm_runs_the_committed_delta_as_trained(hybrid_dir) -> None:
    model, tok = smol_m1.load_source(smol_m1.gguf_path())
    base_config = smol_m1.m1_config(model.config, tok)
    base = smol_m1.m1_tensors(model.state_dict(), base_config)
    trained = cli.student_from_delta(base, base_config, smol_hybrid_delta_dir(), "cpu")
    prompts = [data.chat_ids(tok, t) for t in TEXTS]

    with running_engine(hybrid_dir, max_model_len=2048, kv_cache_memory_bytes=256 << 20) as llm:
        outs = llm.generate(
            [tokens_prompt(p) for p in prompts], greedy(16, prompt_logprobs=0), use_tqdm=False
        )
    worst = 0.0
    for prompt, out in zip(prompts, outs, strict=True):
        got = torch.tensor(
            [step[t].logprob for t, step in zip(prompt[1:], out.prompt_logprobs[1:], strict=True)]
        )
        ids = torch.tensor([prompt])
        with torch.no_grad():
            logp = F.log_softmax(trained(ids)[0].double(), -1)[:-1].gather(1, ids[0, 1:, None])
        worst = max(worst, float((got.double() - logp[:, 0]).abs().max()))
        # Each of vLLM's greedy tokens is the training-side model's top token at that step (a
        # tie within float32 noise may go either way).
        generated = list(out.outputs[0].token_ids)
        full = torch.tensor([prompt + generated])
        with torch.no_grad():
            steps = F.log_softmax(trained(full)[0, len(prompt) - 1 : -1].double(), -1)
        shortfall = steps.max(-1).values - steps.gather(1, torch.tensor(generated)[:, None])[:, 0]
        assert float(shortfall.max()) <= 1e-3, tok.decode(generated)
    print(f"smol-m1-hybrid in vLLM vs the training-side model: {worst:.2e}")
    assert worst <= TOLERANCE, worst
