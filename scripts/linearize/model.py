"""The training-side M1 model: the same math as our vLLM model, in plain differentiable torch.

It is built from an M1-layout tensor dict (smol-m1's conversion) and computes exactly what
``runtime/model`` computes for a ``postnorm: false`` checkpoint with every alpha and beta 1 and a
one-expert MoE (whose router weighs that expert exactly 1):

    x = x + attn(rmsnorm(x));  x = x + mlp(rmsnorm(x));  logits = rmsnorm(x) @ embed^T

* softmax layer: GQA, RoPE (rotate-half) on ``rotary_dim`` dims, scale 1/sqrt(D), causal;
* lightning layer (``runtime/model/lightning.py``): ``q, k, v = silu(qkv_proj h)`` split per head
  as ``[q | k | v]``; the exact recurrence through ``m1_kernels``' chunked torch code (autograd
  goes through it); RMSNorm over all H*D features (eps 1e-6) times ``norm.weight``; times
  ``sigmoid(output_gate h)``; ``out_proj``. Slopes are M1's for this layer index and depth.

Base weights are frozen buffers. Trainable: low-rank factors (``LoRALinear``) and the lightning
norm weights. Every layer listed in ``candidates`` holds both its softmax attention and a lightning
candidate; ``kinds`` says which one the forward uses, so stage 1 can train candidates for every
layer and the layer map can be chosen afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from m1_kernels.lightning.slopes import lightning_slopes
from m1_kernels.lightning.torch_chunked import chunked_sequence
from m1_runtime.engine.smol_m1_hybrid import LORA_A, LORA_B, lightning_init

LIGHTNING_NORM_EPS = 1e-6  # M1's (runtime/model/config.py: lightning_norm_eps)


class LoRALinear(nn.Module):
    """y = x W^T + (x A^T) B^T with W frozen; A, B trainable when rank > 0 (B starts at zero, so
    the layer starts as W exactly)."""

    def __init__(self, weight: torch.Tensor, rank: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.rank = rank
        if rank:
            out_f, in_f = weight.shape
            gen = torch.Generator().manual_seed(seed)
            a = torch.randn(rank, in_f, generator=gen, dtype=torch.float32) / math.sqrt(in_f)
            self.lora_A = nn.Parameter(a.to(weight.device, weight.dtype))
            self.lora_B = nn.Parameter(weight.new_zeros(out_f, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if self.rank:
            y = y + F.linear(F.linear(x, self.lora_A), self.lora_B)
        return y


def up(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (the runtime computes norms, silu and the gate in float32); float64
    stays float64 so the tests can check this model against the float64 reference."""
    return x if x.dtype == torch.float64 else x.float()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = up(x)
    return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * up(weight)


def lightning_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor
) -> torch.Tensor:
    """Batched exact recurrence: q, k, v [B, T, H, D] -> [B, T, H, D], zero initial state.

    The batch folds into the head axis (each (sequence, head) pair is an independent recurrence
    with its head's slope), so m1_kernels' one-sequence chunked code serves a whole batch.
    """
    b, t, h, d = q.shape
    if torch.is_autocast_enabled(q.device.type):
        # The recurrence stays in q's precision (float32 or float64) under autocast: its
        # decayed state sums are what the runtime computes in float32, and they cost ~2% of a
        # layer's FLOPs, so bfloat16 here would buy nothing but error.
        with torch.autocast(q.device.type, enabled=False):
            return lightning_attend(q, k, v, slopes)

    def fold(x: torch.Tensor) -> torch.Tensor:
        return x.permute(1, 0, 2, 3).reshape(t, b * h, x.shape[-1])

    out, _ = chunked_sequence(fold(q), fold(k), fold(v), slopes.repeat(b), None)
    return out.reshape(t, b, h, d).permute(1, 0, 2, 3)


class Lightning(nn.Module):
    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        prefix: str,
        config: dict[str, Any],
        layer: int,
        rank: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.heads = int(config["num_attention_heads"])
        self.head_dim = int(config["head_dim"])
        self.qkv_proj = LoRALinear(tensors[f"{prefix}.qkv_proj.weight"], rank, seed + 1)
        self.output_gate = LoRALinear(tensors[f"{prefix}.output_gate.weight"], rank, seed + 2)
        self.out_proj = LoRALinear(tensors[f"{prefix}.out_proj.weight"], rank, seed + 3)
        self.norm_weight = nn.Parameter(tensors[f"{prefix}.norm.weight"].clone())
        slopes = lightning_slopes(self.heads, layer, int(config["num_hidden_layers"]))
        dtype = torch.float64 if self.qkv_proj.weight.dtype == torch.float64 else torch.float32
        self.register_buffer("slopes", torch.tensor(slopes, dtype=dtype), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, _ = h.shape
        qkv = F.silu(up(self.qkv_proj(h))).view(b, t, self.heads, 3 * self.head_dim)
        q, k, v = qkv.split(self.head_dim, dim=-1)
        mixed = lightning_attend(q, k, v, self.slopes.to(h.device)).reshape(b, t, -1)
        y = rms_norm(mixed, self.norm_weight, LIGHTNING_NORM_EPS)
        y = torch.sigmoid(up(self.output_gate(h))) * y
        return self.out_proj(y.to(h.dtype))

    def delta(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.norm.weight": self.norm_weight.detach()}
        for name in ("qkv_proj", "output_gate", "out_proj"):
            out.update(_lora_delta(getattr(self, name), f"{prefix}.{name}.weight"))
        return out


def _lora_delta(layer: LoRALinear, name: str) -> dict[str, torch.Tensor]:
    if not layer.rank:
        return {}
    return {name + LORA_A: layer.lora_A.detach(), name + LORA_B: layer.lora_B.detach()}


def _load_lora(layer: LoRALinear, name: str, delta: dict[str, torch.Tensor]) -> None:
    if name + LORA_A in delta:
        if not layer.rank:
            raise ValueError(f"{name} has a low-rank update but no adapter here")
        layer.lora_A.data.copy_(delta[name + LORA_A])
        layer.lora_B.data.copy_(delta[name + LORA_B])


def rope_tables(
    config: dict[str, Any], length: int, like: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    dim = int(config.get("rotary_dim") or config["head_dim"])
    theta = float(config["rope_theta"])
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=dtype, device=like.device) / dim)
    freqs = torch.outer(torch.arange(length, dtype=dtype, device=like.device), inv)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the first 2*cos.shape[-1] dims of x [B, T, H, D]."""
    rot = 2 * cos.shape[-1]
    x1, x2, rest = x[..., : rot // 2], x[..., rot // 2 : rot], x[..., rot:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], dim=-1)


class Softmax(nn.Module):
    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str, config: dict[str, Any]):
        super().__init__()
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config["num_key_value_heads"])
        self.head_dim = int(config["head_dim"])
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            self.register_buffer(name, tensors[f"{prefix}.{name}.weight"], persistent=False)

    def forward(self, h: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> torch.Tensor:
        b, t, _ = h.shape
        q = F.linear(h, self.q_proj).view(b, t, self.heads, self.head_dim)
        k = F.linear(h, self.k_proj).view(b, t, self.kv_heads, self.head_dim)
        v = F.linear(h, self.v_proj).view(b, t, self.kv_heads, self.head_dim)
        cos, sin = rope[0][:t], rope[1][:t]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            is_causal=True,
            scale=self.head_dim**-0.5,
            enable_gqa=True,
        )
        return F.linear(o.transpose(1, 2).reshape(b, t, -1), self.o_proj)


class Layer(nn.Module):
    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        config: dict[str, Any],
        i: int,
        candidate: bool,
        attn_rank: int,
        mlp_rank: int,
        seed: int,
    ) -> None:
        super().__init__()
        p = f"model.layers.{i}"
        self.eps = float(config["rms_norm_eps"])
        self.register_buffer("ln1", tensors[f"{p}.input_layernorm.weight"], persistent=False)
        self.register_buffer(
            "ln2", tensors[f"{p}.post_attention_layernorm.weight"], persistent=False
        )
        self.softmax: Softmax | None = None
        self.lightning: Lightning | None = None
        self.use_lightning = False
        if f"{p}.self_attn.qkv_proj.weight" in tensors:
            # A layer that already is lightning in this checkpoint (a built hybrid).
            self.lightning = Lightning(tensors, f"{p}.self_attn", config, i, attn_rank, seed)
            self.use_lightning = True
        else:
            self.softmax = Softmax(tensors, f"{p}.self_attn", config)
            if candidate:
                init = lightning_init(tensors, i, config)
                self.lightning = Lightning(
                    init, f"{p}.self_attn", config, i, attn_rank, seed * 1000 + i * 10
                )
        e = f"{p}.block_sparse_moe.experts.0"
        s = seed * 1000 + i * 10 + 5
        self.w1 = LoRALinear(tensors[f"{e}.w1.weight"], mlp_rank, s)
        self.w3 = LoRALinear(tensors[f"{e}.w3.weight"], mlp_rank, s + 1)
        self.w2 = LoRALinear(tensors[f"{e}.w2.weight"], mlp_rank, s + 2)

    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.ln1, self.eps).to(x.dtype)

    def attend(self, h: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.use_lightning:
            assert self.lightning is not None
            return self.lightning(h)
        assert self.softmax is not None
        return self.softmax(h, rope)

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(h)) * self.w3(h))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = x + self.attend(self.attn_input(x), rope)
        return x + self.mlp(rms_norm(x, self.ln2, self.eps).to(x.dtype))


class HybridLM(nn.Module):
    """M1-layout decoder; ``kinds[i]`` is 0 (lightning) or 1 (softmax) as in attn_type_list."""

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        config: dict[str, Any],
        candidates: set[int] | None = None,
        attn_rank: int = 0,
        mlp_rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.config = dict(
            config,
            head_dim=int(config.get("head_dim") or 0)
            or config["hidden_size"] // config["num_attention_heads"],
        )
        n = int(config["num_hidden_layers"])
        self.eps = float(config["rms_norm_eps"])
        self.register_buffer("embed", tensors["model.embed_tokens.weight"], persistent=False)
        self.register_buffer("final_norm", tensors["model.norm.weight"], persistent=False)
        head = tensors.get("lm_head.weight", tensors["model.embed_tokens.weight"])
        self.register_buffer("lm_head", head, persistent=False)
        candidates = set(candidates or ())
        self.layers = nn.ModuleList(
            Layer(tensors, self.config, i, i in candidates, attn_rank, mlp_rank, seed)
            for i in range(n)
        )
        self.mlp_rank, self.attn_rank = mlp_rank, attn_rank

    # --- layer map -------------------------------------------------------------------
    @property
    def kinds(self) -> list[int]:
        return [0 if layer.use_lightning else 1 for layer in self.layers]

    def set_kinds(self, kinds: list[int]) -> None:
        if len(kinds) != len(self.layers):
            raise ValueError(f"{len(kinds)} layer kinds for {len(self.layers)} layers")
        for layer, kind in zip(self.layers, kinds, strict=True):
            if kind == 0 and layer.lightning is None:
                raise ValueError("a lightning layer needs a lightning candidate")
            if kind == 1 and layer.softmax is None:
                raise ValueError("this checkpoint's layer is lightning; it has no softmax weights")
            layer.use_lightning = kind == 0

    def trainable(self, stage: str) -> list[nn.Parameter]:
        """Stage 1 trains the lightning candidates; stage 2 the used lightning layers and the
        MLP adapters."""
        params: list[nn.Parameter] = []
        for layer in self.layers:
            if layer.lightning is not None and (stage == "1" or layer.use_lightning):
                params += list(layer.lightning.parameters())
            if stage == "2":
                params += [p for m in (layer.w1, layer.w2, layer.w3) for p in m.parameters()]
        return params

    # --- forward -----------------------------------------------------------------------
    def rope(self, length: int) -> tuple[torch.Tensor, ...]:
        return rope_tables(self.config, length, self.embed)

    def forward(self, ids: torch.Tensor, hidden: bool = False) -> torch.Tensor:
        x = F.embedding(ids, self.embed)
        rope = self.rope(ids.shape[1])
        for layer in self.layers:
            x = layer(x, rope)
        x = rms_norm(x, self.final_norm, self.eps).to(x.dtype)
        return x if hidden else F.linear(x, self.lm_head)

    @torch.no_grad()
    def capture(self, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: (attention input after the norm, attention output), on this model's own
        hidden states (stage 1's inputs and targets, taken from the teacher)."""
        x = F.embedding(ids, self.embed)
        rope = self.rope(ids.shape[1])
        out = []
        for layer in self.layers:
            h = layer.attn_input(x)
            a = layer.attend(h, rope)
            out.append((h, a))
            x = x + a
            x = x + layer.mlp(rms_norm(x, layer.ln2, layer.eps).to(x.dtype))
        return out

    # --- the delta -----------------------------------------------------------------------
    def delta(self) -> dict[str, torch.Tensor]:
        """Trained tensors in the delta's naming, for the layers as ``kinds`` uses them."""
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}"
            if layer.use_lightning:
                assert layer.lightning is not None
                out.update(layer.lightning.delta(f"{p}.self_attn"))
            for w in ("w1", "w2", "w3"):
                name = f"{p}.block_sparse_moe.experts.0.{w}.weight"
                out.update(_lora_delta(getattr(layer, w), name))
        return out

    def load_delta(self, delta: dict[str, torch.Tensor]) -> None:
        """Set adapters and norm weights from a delta (the inverse of :meth:`delta`)."""
        used: set[str] = set()
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}"
            if layer.use_lightning:
                assert layer.lightning is not None
                a = f"{p}.self_attn"
                layer.lightning.norm_weight.data.copy_(delta[f"{a}.norm.weight"])
                used.add(f"{a}.norm.weight")
                for name in ("qkv_proj", "output_gate", "out_proj"):
                    _load_lora(getattr(layer.lightning, name), f"{a}.{name}.weight", delta)
                    used |= {f"{a}.{name}.weight{s}" for s in (LORA_A, LORA_B)}
            for w in ("w1", "w2", "w3"):
                name = f"{p}.block_sparse_moe.experts.0.{w}.weight"
                _load_lora(getattr(layer, w), name, delta)
                used |= {name + LORA_A, name + LORA_B}
        extra = set(delta) - used
        if extra:
            raise ValueError(f"delta tensors this model has no place for: {sorted(extra)[:5]}")
