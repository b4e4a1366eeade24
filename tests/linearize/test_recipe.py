"""The linearization recipe (scripts/linearize) and the hybrid preset's delta path, on a tiny
random Llama: the training-side lightning layer against the float64 reference recurrence, the
layer mapping, the delta's save/load/apply round trip, and that both stages lower their loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from m1_kernels.lightning.reference import recurrence
from m1_kernels.lightning.slopes import lightning_slopes
from m1_runtime.engine import smol_m1, smol_m1_hybrid
from m1_runtime.engine.checkpoints import expected_tensors
from scripts.linearize import train
from scripts.linearize.data import Sample, batches
from scripts.linearize.model import HybridLM, Lightning, lightning_attend

LAYERS = 4


@pytest.fixture(scope="module")
def tiny():
    """(transformers Llama, M1 config, M1 tensors) of a random GQA Llama with 6 heads (not a
    power of two, like SmolLM2's 9) over 2 KV heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=200,
        hidden_size=96,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        max_position_embeddings=512,
    )
    llama = LlamaForCausalLM(cfg).eval()
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    config = smol_m1.m1_config(llama.config, tok)
    tensors = smol_m1.m1_tensors(llama.state_dict(), config)
    return llama, config, tensors


def f64(tensors):
    return {k: v.double() for k, v in tensors.items()}


def test_lightning_attend_is_the_reference_recurrence_forward_and_backward() -> None:
    torch.manual_seed(1)
    b, t, h, d = 2, 150, 9, 8  # 150 rows: two full 64-row blocks and a partial one
    q, k, v = (torch.rand(b, t, h, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    for layer in (0, 15, 29):  # the fastest, a middle and the slowest (factor 1e-5) decay
        slopes = torch.tensor(lightning_slopes(h, layer, 30), dtype=torch.float64)
        got = lightning_attend(q, k, v, slopes)
        want = torch.stack([recurrence(q[i], k[i], v[i], slopes)[0] for i in range(b)])
        assert (got - want).abs().max() <= 1e-12 * want.abs().max()
        w = torch.randn_like(got)
        g_got = torch.autograd.grad((got * w).sum(), (q, k, v))
        g_want = torch.autograd.grad((want * w).sum(), (q, k, v))
        for a, e in zip(g_got, g_want, strict=True):
            assert (a - e).abs().max() <= 1e-12 * e.abs().max()


def test_lightning_layer_is_m1s_layer_in_float64(tiny) -> None:
    """silu(qkv) split per head [q|k|v] -> recurrence with this layer's slopes -> RMSNorm over
    H*D (eps 1e-6) x norm weight -> x sigmoid(gate) -> out_proj, written out independently."""
    _, config, tensors = tiny
    cfg = dict(config, head_dim=16)
    layer, heads, d = 2, 6, 16
    init = f64(smol_m1_hybrid.lightning_init(tensors, layer, cfg))
    p = f"model.layers.{layer}.self_attn"
    gen = torch.Generator().manual_seed(3)
    init[f"{p}.output_gate.weight"] = torch.randn(96, 96, generator=gen, dtype=torch.float64) * 0.1
    init[f"{p}.norm.weight"] = 1 + 0.1 * torch.randn(96, generator=gen, dtype=torch.float64)
    module = Lightning(init, p, cfg, layer, rank=0, seed=0)
    h = torch.randn(1, 70, 96, generator=gen, dtype=torch.float64)
    got = module(h)[0]

    x = h[0]
    qkv = F.silu(x @ init[f"{p}.qkv_proj.weight"].T).view(70, heads, 3 * d)
    q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
    slopes = torch.tensor(lightning_slopes(heads, layer, LAYERS), dtype=torch.float64)
    o = recurrence(q, k, v, slopes)[0].reshape(70, heads * d)
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + 1e-6) * init[f"{p}.norm.weight"]
    o = torch.sigmoid(x @ init[f"{p}.output_gate.weight"].T) * o
    want = o @ init[f"{p}.out_proj.weight"].T
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


def test_teacher_is_transformers_llama(tiny) -> None:
    llama, config, tensors = tiny
    ids = torch.randint(3, 200, (2, 40), generator=torch.Generator().manual_seed(4))
    teacher = HybridLM(f64(tensors), config)
    with torch.no_grad():
        want = llama.double()(ids).logits
        got = teacher(ids)
    llama.float()
    # transformers keeps its RoPE frequencies in float32 even in a float64 model: ~1e-7.
    assert (got - want).abs().max() <= 1e-6


def test_layer_mapping_expands_kv_heads_and_keeps_o_proj(tiny) -> None:
    _, config, tensors = tiny
    init = smol_m1_hybrid.lightning_init(tensors, 1, config)
    p = "model.layers.1.self_attn"
    qkv = init[f"{p}.qkv_proj.weight"].view(6, 3, 16, 96)  # per head [q | k | v]
    q = tensors[f"{p}.q_proj.weight"].view(6, 16, 96)
    k = tensors[f"{p}.k_proj.weight"].view(2, 16, 96)
    v = tensors[f"{p}.v_proj.weight"].view(2, 16, 96)
    for head in range(6):  # query heads 0-2 share KV head 0, 3-5 KV head 1 (GQA's grouping)
        assert torch.equal(qkv[head, 0], q[head])
        assert torch.equal(qkv[head, 1], k[head // 3])
        assert torch.equal(qkv[head, 2], v[head // 3])
    assert torch.equal(init[f"{p}.out_proj.weight"], tensors[f"{p}.o_proj.weight"])
    assert not init[f"{p}.output_gate.weight"].any()
    assert torch.equal(init[f"{p}.norm.weight"], torch.ones(96))

    hybrid = smol_m1_hybrid.hybrid_config(config, [0, 0, 1, 0])
    built = smol_m1_hybrid.hybrid_tensors(tensors, hybrid)
    assert hybrid["architectures"] == ["MiniMaxM1ForCausalLM"]
    assert {n: tuple(t.shape) for n, t in built.items()} == expected_tensors(hybrid)
    short = smol_m1_hybrid.hybrid_config(config, [0, 1])  # a toy run's first two layers
    assert set(smol_m1_hybrid.hybrid_tensors(tensors, short)) == set(expected_tensors(short))


def _trained_student(tensors, config, kinds):
    student = HybridLM(
        f64(tensors),
        config,
        candidates={i for i, k in enumerate(kinds) if k == 0},
        attn_rank=4,
        mlp_rank=2,
        seed=5,
    )
    student.set_kinds(kinds)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():  # as if trained: every adapter and norm away from its start
        for p in student.trainable("2"):
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return student


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_delta_round_trip(tiny, tmp_path, dtype) -> None:
    """Adapters saved as a delta, loaded and merged into the weights give the model the
    adapters give (float64 apart from the stored dtype's rounding), and the manifest guards
    the source."""
    _, config, tensors = tiny
    kinds = [0, 1, 0, 0]
    student = _trained_student(tensors, config, kinds)
    folder = smol_m1_hybrid.save_delta(
        tmp_path / "delta",
        student.delta(),
        {"source": "tiny", "attn_type_list": kinds, "ranks": {"lightning_attention": 4, "mlp": 2}},
        dtype,
    )
    delta, manifest = smol_m1_hybrid.load_delta(folder)
    assert manifest["attn_type_list"] == kinds and manifest["dtype"] == dtype
    # the rounding of the stored dtype only
    for name, t in student.delta().items():
        assert torch.allclose(delta[name].double(), t, rtol=1e-3 if dtype == "float16" else 1e-7)

    merged, hconfig = smol_m1_hybrid.build_tensors(tensors, config, folder, origin="tiny")
    assert {n: tuple(t.shape) for n, t in merged.items()} == expected_tensors(hconfig)
    merged_model = HybridLM(f64(merged), hconfig)  # no adapters: the checkpoint as built
    assert merged_model.kinds == kinds
    reloaded = HybridLM(f64(tensors), config, candidates={0, 2, 3}, attn_rank=4, mlp_rank=2)
    reloaded.set_kinds(kinds)
    reloaded.load_delta({k: v.double() for k, v in delta.items()})
    ids = torch.randint(3, 200, (2, 90), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a, b, live = merged_model(ids), reloaded(ids), student(ids)
    # The merge is written in the checkpoint's float32: its rounding (~1e-7) is all that differs.
    assert (a - b).abs().max() <= 1e-6
    if dtype == "float32":
        assert (a - live).abs().max() <= 1e-5
    assert (a - HybridLM(f64(tensors), config)(ids)).abs().max() > 1e-3  # the delta matters

    with pytest.raises(smol_m1_hybrid.DeltaMismatch, match="trained on"):
        smol_m1_hybrid.build_tensors(tensors, config, folder, origin="another source")
    bad = dict(delta)
    bad.pop(next(n for n in bad if n.endswith(smol_m1_hybrid.LORA_A)))
    with pytest.raises(smol_m1_hybrid.DeltaMismatch, match="B factors without A"):
        smol_m1_hybrid.apply_delta(merged, bad)


def test_layer_map_choice() -> None:
    errors = {"0": 0.2, "1": 0.9, "2": 0.1, "3": 0.5}
    assert train.choose_layer_map(4, "auto:2", errors)[0] == [0, 1, 0, 1]
    assert train.choose_layer_map(16, "m1", {})[0] == [0] * 7 + [1] + [0] * 7 + [1]
    assert train.choose_layer_map(4, "0,2", {})[0] == [1, 0, 1, 0]
    with pytest.raises(ValueError):
        train.choose_layer_map(4, "4", {})


def test_both_stages_lower_their_loss(tiny) -> None:
    _, config, tensors = tiny
    teacher = HybridLM(tensors, config)
    student = HybridLM(tensors, config, candidates=set(range(LAYERS)), attn_rank=4, mlp_rank=2)
    gen = torch.Generator().manual_seed(8)
    samples = [Sample(torch.randint(3, 200, (48,), generator=gen).tolist(), 8) for _ in range(16)]
    data = batches(samples, 4, 48, seed=0, pad=0)
    s1 = train.stage1(teacher, student, data, "cpu", 15, 0, 1e-2, 1e-2, lambda _: None)
    first = sum(s1["history"][0]["errors"].values()) / LAYERS
    assert s1["history"][-1]["mean_error"] < 0.8 * first
    student.set_kinds(train.choose_layer_map(LAYERS, "auto:1", s1["final_errors"])[0])
    s2 = train.stage2(teacher, student, data, "cpu", 15, 0, 3e-3, 1e-2, lambda _: None)
    assert s2["history"][-1]["kl"] < 0.8 * s2["history"][0]["kl"]


def test_sweep_picks_the_fewest_softmax_layers_within_the_ratio() -> None:
    def row(k: int, ppl: float) -> dict:
        return {"softmax_layers": k, "kinds": [k], "perplexity": ppl}

    sweep = [row(30, 2.0), row(4, 9.0), row(8, 5.9), row(15, 3.0)]
    kinds, why = train.pick_from_sweep(sweep, 3.0)
    assert kinds == [8] and "8 softmax layers, the fewest within 3.0x" in why
    # Nothing within: the most softmax layers swept, and the reason says so.
    kinds, why = train.pick_from_sweep(sweep, 1.2)
    assert kinds == [15] and "none within 1.2x" in why


def test_recurrence_keeps_float32_under_bfloat16_autocast() -> None:
    """The cpu scale trains under bfloat16 autocast; the recurrence must not follow it."""
    torch.manual_seed(2)
    q, k, v = (torch.rand(2, 70, 3, 8) for _ in range(3))
    slopes = torch.tensor(lightning_slopes(3, 1, 4), dtype=torch.float32)
    plain = lightning_attend(q, k, v, slopes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = lightning_attend(q, k, v, slopes)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_optimizer_updates_reach_the_forward_inside_one_precision_context() -> None:
    """The recipe runs in one bfloat16 autocast context; autocast's cast cache would keep the
    first bfloat16 copy of each adapter for the whole run, so training would change nothing
    the forward pass sees."""
    from scripts.linearize.cli import precision
    from scripts.linearize.model import LoRALinear

    torch.manual_seed(3)
    layer = LoRALinear(torch.randn(8, 8), rank=2)
    x = torch.randn(3, 8)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    with precision(torch.device("cpu"), "bfloat16"):
        before = layer(x)
        before.float().pow(2).sum().backward()
        opt.step()
        after = layer(x)
    assert not torch.equal(before, after)


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("38 + 17 = 55", 55),  # the question restated, then the answer
        ("13 - 31 is 13 - 31 = -18.", -18),
        ("We add them. The answer is 1,119", 1119),
        ("42", 42),
        ("I cannot tell.", None),
    ],
)
def test_arithmetic_answer_is_what_the_reply_concludes(reply: str, value: int | None) -> None:
    from scripts.linearize.evaluate import answer_integer

    assert answer_integer(reply) == value
