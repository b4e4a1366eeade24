"""m1_runtime.engine.checkpoints: layout, determinism, caching, locking and --model resolution."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from m1_runtime.engine import checkpoints as ck

REPO = Path(__file__).resolve().parents[2]
SMALL = {"num_hidden_layers": 2, "attn_type_list": [0, 1], "num_local_experts": 2}


def load_all(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(path.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    return tensors


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(cache) -> Path:
    return ck.resolve_model("tiny-m1", cache_dir=cache)


@pytest.fixture(scope="module")
def tiny_tensors(tiny) -> dict[str, torch.Tensor]:
    return load_all(tiny)


def hand_written_names(cfg: dict) -> dict[str, tuple[int, ...]]:
    """The M1 layout spelled out independently of expected_tensors()."""
    hd, v, h, kv, d = (
        cfg["hidden_size"],
        cfg["vocab_size"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
        cfg["head_dim"],
    )
    inter, n_exp = cfg["intermediate_size"], cfg["num_local_experts"]
    out = {
        "model.embed_tokens.weight": (v, hd),
        "model.norm.weight": (hd,),
        "lm_head.weight": (v, hd),
    }
    for i, kind in enumerate(cfg["attn_type_list"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (hd,)
        out[p + "post_attention_layernorm.weight"] = (hd,)
        if kind == 0:
            out[p + "self_attn.qkv_proj.weight"] = (3 * h * d, hd)
            out[p + "self_attn.output_gate.weight"] = (h * d, hd)
            out[p + "self_attn.out_proj.weight"] = (hd, h * d)
            out[p + "self_attn.norm.weight"] = (h * d,)
        else:
            out[p + "self_attn.q_proj.weight"] = (h * d, hd)
            out[p + "self_attn.k_proj.weight"] = (kv * d, hd)
            out[p + "self_attn.v_proj.weight"] = (kv * d, hd)
            out[p + "self_attn.o_proj.weight"] = (hd, h * d)
        out[p + "block_sparse_moe.gate.weight"] = (n_exp, hd)
        for e in range(n_exp):
            q = p + f"block_sparse_moe.experts.{e}."
            out[q + "w1.weight"] = (inter, hd)
            out[q + "w3.weight"] = (inter, hd)
            out[q + "w2.weight"] = (hd, inter)
    return out


def check_layout(path: Path, cfg: dict, tensors: dict[str, torch.Tensor] | None = None) -> None:
    tensors = load_all(path) if tensors is None else tensors
    want = hand_written_names(cfg)
    assert set(tensors) == set(want)
    for name, shape in want.items():
        assert tuple(tensors[name].shape) == shape, name
        assert tensors[name].dtype == torch.float32
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(want)
    for name, shard in index["weight_map"].items():
        with safe_open(str(path / shard), framework="pt") as f:
            assert name in f.keys()
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    assert index["metadata"]["total_size"] == total


def test_tiny_preset_layout(tiny, tiny_tensors):
    cfg = ck.preset_config("tiny-m1")
    assert tiny.name.startswith("tiny-m1-") and ck.is_complete(tiny)
    check_layout(tiny, cfg, tiny_tensors)
    assert len(list(tiny.glob("model-*-of-*.safetensors"))) >= 2  # really sharded
    assert json.loads((tiny / "config.json").read_text()) == cfg
    for fname in ck.TOKENIZER_FILES:
        assert (tiny / fname).read_bytes() == (REPO / "configs/models/tiny-m1" / fname).read_bytes()
    ck.check_model_dir(tiny)


def test_norms_are_near_one_and_matrices_have_init_std(tiny_tensors):
    tensors = tiny_tensors
    norm = tensors["model.layers.0.input_layernorm.weight"]
    assert 0.9 < norm.mean().item() < 1.1 and 0.05 < norm.std().item() < 0.15
    emb = tensors["model.embed_tokens.weight"]
    assert abs(emb.std().item() - 0.02) < 0.001
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_resolve_is_cached(tiny, cache):
    marker = (tiny / ".complete").read_text()
    assert ck.resolve_model("tiny-m1", cache_dir=cache) == tiny
    assert (tiny / ".complete").read_text() == marker
    assert not list(cache.glob(".*.tmp-*"))


def test_all_softmax_variant(cache, tiny):
    path = ck.build_variant("softmax", {"attn_type_list": [1] * 8}, cache_dir=cache)
    assert path != tiny and path.name.startswith("tiny-m1-softmax-")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["attn_type_list"] == [1] * 8
    check_layout(path, cfg)


def test_variant_with_changed_config_gets_new_dir(cache):
    a = ck.build_variant("rope", {"rotary_dim": 64}, cache_dir=cache)
    b = ck.build_variant("rope", {"rotary_dim": 32, "rope_theta": 1e4}, cache_dir=cache)
    assert a != b
    assert json.loads((a / "config.json").read_text())["rotary_dim"] == 64


def small_config() -> dict:
    cfg = ck.preset_config("tiny-m1")
    cfg.update(SMALL)
    return cfg


def test_deterministic_and_independent_of_sharding(tmp_path):
    cfg = small_config()
    a = load_all(ck.build_checkpoint(tmp_path / "a", cfg, seed=0, progress=False))
    b = load_all(ck.build_checkpoint(tmp_path / "b", cfg, seed=0, progress=False, num_shards=1))
    c = load_all(ck.build_checkpoint(tmp_path / "c", cfg, seed=1, progress=False))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(not torch.equal(a[n], c[n]) for n in a)
    # Different tensors of one build get different values, too.
    assert not torch.equal(
        a["model.layers.0.block_sparse_moe.experts.0.w1.weight"],
        a["model.layers.0.block_sparse_moe.experts.1.w1.weight"],
    )


def test_build_replaces_existing_dest_atomically(tmp_path):
    dest = tmp_path / "m"
    ck.build_checkpoint(dest, small_config(), seed=0, progress=False)
    ck.build_checkpoint(dest, small_config(), seed=1, progress=False)
    assert json.loads((dest / ".complete").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["m"]


def test_bfloat16_config(tmp_path):
    cfg = small_config() | {"torch_dtype": "bfloat16"}
    tensors = load_all(ck.build_checkpoint(tmp_path / "bf", cfg, progress=False))
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}


def test_bad_configs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="attn_type_list"):
        ck.build_checkpoint(tmp_path / "x", small_config() | {"attn_type_list": [0]})
    with pytest.raises(ValueError, match="vocab_size"):
        ck.build_checkpoint(tmp_path / "x", small_config() | {"vocab_size": 100})
    assert not (tmp_path / "x").exists()


def test_builds_write_nothing_to_stdout(tmp_path, capfd):
    ck.build_checkpoint(tmp_path / "q", small_config(), progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "building" in err


def test_concurrent_builds_from_two_processes(tmp_path):
    # Each child announces itself, then waits for the other, so both call ensure_checkpoint at
    # about the same moment and really contend for the lock.
    script = textwrap.dedent(
        f"""
        import json, os, sys, time
        from pathlib import Path
        from m1_runtime.engine import checkpoints as ck
        cache, me = Path(sys.argv[1]), sys.argv[2]
        (cache / f"ready-{{me}}").touch()
        while len(list(cache.glob("ready-*"))) < 2:
            time.sleep(0.01)
        cfg = ck.preset_config("tiny-m1")
        cfg.update({SMALL!r})
        path = ck.ensure_checkpoint("race", cfg, cache_dir=cache, progress=False)
        built = json.loads((path / ".complete").read_text())["builder_pid"] == os.getpid()
        print(path, built)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    outs = [out.split() for out, _ in results]
    assert outs[0][0] == outs[1][0]
    assert sorted(built for _, built in outs) == ["False", "True"]  # built once, reused once
    path = Path(outs[0][0])
    assert ck.is_complete(path)
    check_layout(path, json.loads((path / "config.json").read_text()))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and "tmp" in p.name]
    assert leftovers == []
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == [path]


# --- resolve_model errors


def test_unknown_preset_lists_presets(tmp_path):
    with pytest.raises(ValueError, match=r"neither a preset \(smol-m1, smol-m1-hybrid, tiny-m1\)"):
        ck.resolve_model("tiny-m2", cache_dir=tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="nor an existing model directory"):
        ck.resolve_model(str(tmp_path / "nope"), cache_dir=tmp_path)


def test_directory_without_weights_or_tokenizer(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    with pytest.raises(ValueError, match="config.json.*weights.*tokenizer"):
        ck.resolve_model(str(d))
    (d / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"missing: weights \(\*\.safetensors"):
        ck.resolve_model(str(d))


def test_directory_with_missing_shard(tiny, tmp_path):
    d = tmp_path / "copy"
    d.mkdir()
    for f in tiny.iterdir():
        if f.name != "model-00002-of-00003.safetensors":
            (d / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match="model-00002-of-00003.safetensors"):
        ck.resolve_model(str(d))
    (d / "model-00002-of-00003.safetensors").write_bytes(
        (tiny / "model-00002-of-00003.safetensors").read_bytes()
    )
    assert ck.resolve_model(str(d)) == d.resolve()


def test_file_is_not_a_model(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ck.resolve_model(str(f))


def test_default_cache_dir(tmp_path, monkeypatch):
    assert ck.default_cache_dir(tmp_path) == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ck.default_cache_dir() == tmp_path / "m1-mcp" / "models"


# --- numerical sanity: a plain-torch forward of the random tiny model (no RoPE; sanity only)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def lightning(h, t, p, cfg, layer):
    n_heads, d, n_layers = cfg["num_attention_heads"], cfg["head_dim"], cfg["num_hidden_layers"]
    qkv = F.silu(h @ t[p + "qkv_proj.weight"].T).view(h.shape[0], n_heads, 3 * d)
    q, k, v = qkv.split(d, dim=-1)
    slopes = 2.0 ** (-8.0 / n_heads * torch.arange(1, n_heads + 1))
    decay = torch.exp(-slopes * (1 - layer / (n_layers - 1) + 1e-5))[:, None, None]
    state, outs = torch.zeros(n_heads, d, d), []
    for i in range(h.shape[0]):
        state = decay * state + k[i, :, :, None] * v[i, :, None, :]
        outs.append(torch.einsum("hd,hde->he", q[i], state))
    o = rms_norm(torch.stack(outs).flatten(1), t[p + "norm.weight"], 1e-6)
    o = o * torch.sigmoid(h @ t[p + "output_gate.weight"].T)
    return o @ t[p + "out_proj.weight"].T


def softmax_attn(h, t, p, cfg):
    n, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    q = (h @ t[p + "q_proj.weight"].T).view(-1, n, d).transpose(0, 1)
    k = (h @ t[p + "k_proj.weight"].T).view(-1, kv, d).transpose(0, 1).repeat_interleave(n // kv, 0)
    v = (h @ t[p + "v_proj.weight"].T).view(-1, kv, d).transpose(0, 1).repeat_interleave(n // kv, 0)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return o.transpose(0, 1).flatten(1) @ t[p + "o_proj.weight"].T


def moe(h, t, p, cfg):
    probs = torch.softmax(h @ t[p + "gate.weight"].T, dim=-1)
    w, idx = probs.topk(cfg["num_experts_per_tok"], dim=-1)
    w = w / w.sum(-1, keepdim=True)
    out = torch.zeros_like(h)
    for e in range(cfg["num_local_experts"]):
        q = p + f"experts.{e}."
        y = (F.silu(h @ t[q + "w1.weight"].T) * (h @ t[q + "w3.weight"].T)) @ t[q + "w2.weight"].T
        out += y * (w * (idx == e)).sum(-1, keepdim=True)
    return out


def test_random_tiny_model_forward_is_sane(tiny_tensors):
    cfg, t = ck.preset_config("tiny-m1"), tiny_tensors
    eps = cfg["rms_norm_eps"]
    ids = torch.randint(0, cfg["vocab_size"], (48,), generator=torch.Generator().manual_seed(0))
    x = t["model.embed_tokens.weight"][ids]
    for i, kind in enumerate(cfg["attn_type_list"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, t[p + "input_layernorm.weight"], eps)
        if kind == 0:
            a, key = lightning(h, t, p + "self_attn.", cfg, i), "linear_attention"
        else:
            a, key = softmax_attn(h, t, p + "self_attn.", cfg), "full_attention"
        x = h * cfg[f"layernorm_{key}_alpha"] + a * cfg[f"layernorm_{key}_beta"]
        h = rms_norm(x, t[p + "post_attention_layernorm.weight"], eps)
        x = h * cfg["layernorm_mlp_alpha"] + moe(h, t, p + "block_sparse_moe.", cfg)
        assert torch.isfinite(x).all() and x.abs().max() < 100, i
    logits = rms_norm(x, t["model.norm.weight"], eps) @ t["lm_head.weight"].T
    assert torch.isfinite(logits).all()
    assert 0.05 < logits.std().item() < 5.0
