"""The delta path end to end on the CPU: the toy recipe trains a delta on SmolLM2's first four
layers, the preset builder applies it to the GGUF's converted weights, and our vLLM plugin loads
the hybrid checkpoint (three lightning layers, one softmax) and scores prompts exactly as the
training-side model with the delta's adapters does."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from m1_runtime.engine import smol_m1, smol_m1_hybrid
from scripts.linearize import cli, data
from scripts.linearize.model import HybridLM
from tests.runtime.vllm_helpers import greedy, running_engine, tokens_prompt

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4  # prompt log-probabilities, float32 on both sides
TEXTS = [
    "What is 17*3? Answer with the number.",
    "The mitochondria is the powerhouse of the cell. " * 12,  # > 64 tokens: crosses a block
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("linearize")
    cli.main(
        [
            "--scale",
            "toy",
            "--out",
            str(out),
            "--steps1",
            "4",
            "--steps2",
            "4",
            "--train-samples",
            "4",
            "--new-tokens",
            "16",
            "--eval-samples",
            "1",
            "--skip-eval",
        ]
    )
    ckpt = out / "ckpt"
    ckpt.mkdir()
    smol_m1_hybrid.write_checkpoint(ckpt, smol_m1.gguf_path(), out / "delta")
    return out / "delta", ckpt


def test_vllm_runs_the_hybrid_as_trained(built) -> None:
    delta_dir, ckpt = built
    config = json.loads((ckpt / "config.json").read_text())
    assert config["architectures"] == ["MiniMaxM1ForCausalLM"]
    assert config["attn_type_list"] == [0, 0, 0, 1]

    model, tok = smol_m1.load_source(smol_m1.gguf_path())
    base_config = smol_m1.m1_config(model.config, tok)
    base = smol_m1_hybrid.truncate(smol_m1.m1_tensors(model.state_dict(), base_config), 4)
    trained = cli.student_from_delta(base, base_config, delta_dir, "cpu")
    untrained = HybridLM(smol_m1_hybrid.hybrid_tensors(base, config), config).eval()
    prompts = [data.chat_ids(tok, t) for t in TEXTS]

    with running_engine(ckpt, max_model_len=1024, kv_cache_memory_bytes=256 << 20) as llm:
        outs = llm.generate(
            [tokens_prompt(p) for p in prompts], greedy(1, prompt_logprobs=0), use_tqdm=False
        )
    worst = moved = 0.0
    for prompt, out in zip(prompts, outs, strict=True):
        got = torch.tensor(
            [step[t].logprob for t, step in zip(prompt[1:], out.prompt_logprobs[1:], strict=True)]
        )
        ids = torch.tensor([prompt])
        with torch.no_grad():
            for name, m in (("trained", trained), ("untrained", untrained)):
                logp = F.log_softmax(m(ids)[0].double(), -1)[:-1].gather(1, ids[0, 1:, None])[:, 0]
                diff = float((got.double() - logp).abs().max())
                if name == "trained":
                    worst = max(worst, diff)
                else:
                    moved = max(moved, diff)
    print(
        f"hybrid in vLLM vs the training-side model: {worst:.2e} (without the delta: {moved:.2e})"
    )
    assert worst <= TOLERANCE, worst
    assert moved > 100 * TOLERANCE  # the delta was applied, and it matters
