"""m1_runtime.model.config (both config spellings) and m1_kernels.lightning.slopes (per-layer
decay)."""

from __future__ import annotations

import json
import math

import pytest
from transformers import AutoConfig, MiniMaxConfig

from m1_kernels.lightning.slopes import alibi_slopes, lightning_slopes
from m1_runtime.engine.checkpoints import configs_dir
from m1_runtime.model.config import LIGHTNING, SOFTMAX, MiniMaxM1Config, architecture_of


def test_released_m1_config_reads_as_m1():
    raw = json.loads((configs_dir() / "minimax-m1-80k.json").read_text())
    arch = architecture_of(MiniMaxM1Config(**raw))
    assert (arch.hidden_size, arch.num_layers, arch.num_heads, arch.head_dim) == (6144, 80, 64, 128)
    assert arch.hidden_size != arch.num_heads * arch.head_dim
    assert arch.num_lightning_layers == 70
    assert [arch.is_lightning(i) for i in range(8)] == [True] * 7 + [False]
    assert arch.rotary_dim == 64 and arch.rope_theta == 1e7 and arch.postnorm
    assert arch.scales["linear_alpha"] == pytest.approx((2 * 80) ** 0.25)
    assert (arch.num_experts, arch.top_k, arch.expert_intermediate) == (32, 2, 9216)


def test_m1_config_fills_layer_types_for_vllm():
    config = MiniMaxM1Config(num_hidden_layers=4, attn_type_list=[0, 0, 0, 1])
    assert config.layer_types == [LIGHTNING, LIGHTNING, LIGHTNING, SOFTMAX]
    back = MiniMaxM1Config(num_hidden_layers=2, layer_types=[SOFTMAX, LIGHTNING])
    assert back.attn_type_list == [1, 0]


def test_transformers_minimax_config_reads_the_same():
    hf = MiniMaxConfig(
        num_hidden_layers=4,
        hidden_size=192,
        num_attention_heads=4,
        head_dim=64,
        layer_types=[LIGHTNING] * 3 + [SOFTMAX],
        linear_attn_alpha_factor=3.0,
        mlp_beta_factor=0.5,
        rope_parameters={"rope_type": "default", "rope_theta": 5e6},
    )
    arch = architecture_of(hf)
    assert arch.postnorm  # transformers' MiniMax always uses the post-norm residual
    assert arch.rotary_dim == 64 and arch.rope_theta == 5e6
    assert arch.scales["linear_alpha"] == 3.0 and arch.scales["mlp_beta"] == 0.5
    assert arch.layer_types == (LIGHTNING,) * 3 + (SOFTMAX,)


def test_autoconfig_knows_minimax_m1_after_plugin_registration():
    from m1_runtime.model.plugin import register

    register()
    register()  # idempotent: vLLM calls it in every process, maybe more than once
    config = AutoConfig.for_model("minimax_m1", num_hidden_layers=8)
    assert isinstance(config, MiniMaxM1Config)


def test_bad_layer_pattern_is_a_clear_error():
    config = MiniMaxM1Config(num_hidden_layers=4, attn_type_list=[0, 1, 0, 1])
    config.attn_type_list = [0, 1]
    with pytest.raises(ValueError, match="2 layer types for 4 layers"):
        architecture_of(config)


def test_alibi_slopes_power_of_two_and_interpolated():
    assert alibi_slopes(8) == pytest.approx([2 ** -(i + 1) for i in range(8)])
    # 6 heads: the 4-head series, then every other slope of the 8-head series.
    four = [2 ** (-2 * (i + 1)) for i in range(4)]
    eight = [2 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(6) == pytest.approx(four + eight[0::2][:2])
    assert len(alibi_slopes(64)) == 64 and alibi_slopes(64)[0] == pytest.approx(2**-0.125)


def test_layer_slopes_decay_slower_with_depth():
    first, last = lightning_slopes(8, 0, 80), lightning_slopes(8, 79, 80)
    assert first[0] == pytest.approx(0.5 * (1 + 1e-5))
    assert last[0] == pytest.approx(0.5 * 1e-5)
    assert lightning_slopes(4, 0, 1) == pytest.approx([s * (1 + 1e-5) for s in alibi_slopes(4)])
    assert all(math.isfinite(s) and s > 0 for s in last)
