"""smol-m1, the default model: the GGUF of SmolLM2-135M-Instruct converted into M1's layout and
run by our plugin in vLLM, against transformers' own Llama on the same dequantized weights."""

from __future__ import annotations

import json

import pytest
import torch

from m1_runtime.engine.checkpoints import ensure_smol_m1, expected_tensors, is_complete
from m1_runtime.engine.smol_m1 import gguf_path, load_source
from tests.runtime.vllm_helpers import greedy, running_engine, tokens_prompt

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4  # prompt log-probabilities, float32 on both sides
NEW_TOKENS = 24
TEXTS = [
    "What is 17*3? Answer with the number.",
    "Write a Python function that returns the largest element of a list, and explain it.",
    "The mitochondria is the powerhouse of the cell. " * 12,
]


@pytest.fixture(scope="module")
def smol_dir():
    return ensure_smol_m1()


@pytest.fixture(scope="module")
def source():
    return load_source(gguf_path())


@pytest.fixture(scope="module")
def prompts(source):
    _, tok = source
    chats = [
        tok.apply_chat_template(
            [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False
        )
        for t in TEXTS
    ]
    return [tok.encode(c, add_special_tokens=False) for c in chats]


def test_checkpoint_is_m1_layout(smol_dir) -> None:
    config = json.loads((smol_dir / "config.json").read_text())
    assert is_complete(smol_dir)
    assert config["architectures"] == ["MiniMaxM1SoftmaxForCausalLM"]
    assert config["attn_type_list"] == [1] * config["num_hidden_layers"] == [1] * 30
    assert (config["num_local_experts"], config["num_experts_per_tok"]) == (1, 1)
    from safetensors import safe_open

    with safe_open(str(smol_dir / "model.safetensors"), framework="pt") as f:
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        assert not f.get_tensor("model.layers.0.block_sparse_moe.gate.weight").any()
    assert shapes == expected_tensors(config)
    assert "<|im_start|>" in (smol_dir / "chat_template.jinja").read_text()


def test_vllm_matches_transformers_llama(smol_dir, source, prompts) -> None:
    model, _ = source
    # An explicit KV cache size: vLLM 0.26's CPU worker counts the 540 MB of float32 weights
    # against the default memory fraction and leaves too little for one 2K-token sequence.
    with running_engine(smol_dir, max_model_len=2048, kv_cache_memory_bytes=512 << 20) as llm:
        outs = llm.generate(
            [tokens_prompt(p) for p in prompts],
            greedy(NEW_TOKENS, logprobs=0, prompt_logprobs=0),
            use_tqdm=False,
        )
    worst = 0.0
    for prompt, out in zip(prompts, outs, strict=True):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        expected = logp[:-1].gather(1, ids[0, 1:, None])[:, 0].tolist()
        got = [step[t].logprob for t, step in zip(prompt[1:], out.prompt_logprobs[1:], strict=True)]
        worst = max(worst, max(abs(a - b) for a, b in zip(got, expected, strict=True)))
        with torch.no_grad():
            hf = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(prompt) :]
        assert list(out.outputs[0].token_ids) == hf.tolist()
    print(f"smol-m1 vs transformers: largest prompt log-probability difference {worst:.2e}")
    assert worst <= TOLERANCE, worst
