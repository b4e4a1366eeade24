"""MiniMax-M1 configuration: one transformers config class and one normalised view of it.

Two spellings of the same architecture exist in the wild:

* MiniMax's own ``config.json`` (``model_type: "minimax_m1"``, also MiniMax-Text-01):
  ``attn_type_list`` (0 = lightning, 1 = softmax), ``rotary_dim``, ``postnorm``,
  ``layernorm_{linear_attention,full_attention,mlp}_{alpha,beta}``.
* transformers' in-library ``minimax`` config: ``layer_types`` ("linear_attention" /
  "full_attention"), ``{linear_attn,full_attn,mlp}_{alpha,beta}_factor``, ``rope_parameters``,
  and always the post-norm residual form.

``MiniMaxM1Config`` reads either set of keys so vLLM can load a ``minimax_m1`` checkpoint without
``trust_remote_code``. The model code never reads raw config attributes: it asks
:func:`architecture_of` for an :class:`M1Architecture`, which works for both config classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedConfig

LIGHTNING = "linear_attention"
SOFTMAX = "full_attention"
_TYPE_FROM_CODE = {0: LIGHTNING, 1: SOFTMAX}
_CODE_FROM_TYPE = {LIGHTNING: 0, SOFTMAX: 1}

# (M1 key, transformers key) for the residual scales of each sub-layer.
_SCALE_KEYS = {
    "linear_alpha": ("layernorm_linear_attention_alpha", "linear_attn_alpha_factor"),
    "linear_beta": ("layernorm_linear_attention_beta", "linear_attn_beta_factor"),
    "full_alpha": ("layernorm_full_attention_alpha", "full_attn_alpha_factor"),
    "full_beta": ("layernorm_full_attention_beta", "full_attn_beta_factor"),
    "mlp_alpha": ("layernorm_mlp_alpha", "mlp_alpha_factor"),
    "mlp_beta": ("layernorm_mlp_beta", "mlp_beta_factor"),
}


class MiniMaxM1Config(PreTrainedConfig):
    """Config for ``model_type: "minimax_m1"``; defaults are the released M1 checkpoints'."""

    model_type = "minimax_m1"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 200064
    hidden_size: int = 6144
    intermediate_size: int = 9216
    num_hidden_layers: int = 80
    num_attention_heads: int = 64
    num_key_value_heads: int = 8
    head_dim: int | None = 128
    hidden_act: str = "silu"
    max_position_embeddings: int = 10240000
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    num_local_experts: int = 32
    num_experts_per_tok: int = 2
    shared_intermediate_size: int = 0
    attn_type_list: list[int] | None = None
    layer_types: list[str] | None = None
    rotary_dim: int | None = None
    rope_theta: float = 10000000.0
    postnorm: bool = False
    layernorm_linear_attention_alpha: float | None = None
    layernorm_linear_attention_beta: float | None = None
    layernorm_full_attention_alpha: float | None = None
    layernorm_full_attention_beta: float | None = None
    layernorm_mlp_alpha: float | None = None
    layernorm_mlp_beta: float | None = None
    # MiniMax computes the LM head in float32 (the M1 report); vLLM reads this attribute.
    head_dtype: str = "float32"

    def __post_init__(self, **kwargs: Any) -> None:
        # Fill whichever spelling of the layer pattern is missing from the other, so both
        # vLLM (which looks at ``layer_types`` to decide whether a model is hybrid) and M1's
        # own code (``attn_type_list``) see the same thing.
        if self.attn_type_list is None and self.layer_types is None:
            self.attn_type_list = [0 if (i + 1) % 8 else 1 for i in range(self.num_hidden_layers)]
        if self.attn_type_list is None:
            assert self.layer_types is not None  # one of the two is set (above)
            self.attn_type_list = [_CODE_FROM_TYPE[t] for t in self.layer_types]
        if self.layer_types is None:
            self.layer_types = [_TYPE_FROM_CODE[int(c)] for c in self.attn_type_list]
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)


@dataclass(frozen=True)
class M1Architecture:
    """Everything the model needs, read once from either config spelling."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    layer_types: tuple[str, ...]
    rotary_dim: int
    rope_theta: float
    max_position: int
    rms_norm_eps: float
    postnorm: bool
    scales: dict[str, float]
    num_experts: int
    top_k: int
    expert_intermediate: int
    shared_intermediate: int
    tie_word_embeddings: bool
    # The lightning layer's RMSNorm over H*D features; M1's code uses 1e-6.
    lightning_norm_eps: float = 1e-6

    def is_lightning(self, layer_idx: int) -> bool:
        return self.layer_types[layer_idx] == LIGHTNING

    @property
    def num_lightning_layers(self) -> int:
        return sum(t == LIGHTNING for t in self.layer_types)


def _get(config: Any, name: str, default: Any = None) -> Any:
    value = getattr(config, name, None)
    return default if value is None else value


def _layer_types(config: Any, num_layers: int) -> tuple[str, ...]:
    codes = _get(config, "attn_type_list")
    if codes is not None:
        types = tuple(_TYPE_FROM_CODE[int(c)] for c in codes)
    else:
        types = tuple(_get(config, "layer_types", ()))
    if len(types) != num_layers:
        raise ValueError(
            f"the config lists {len(types)} layer types for {num_layers} layers; "
            "attn_type_list / layer_types must name every layer"
        )
    unknown = set(types) - {LIGHTNING, SOFTMAX}
    if unknown:
        raise ValueError(
            f"unknown layer types {sorted(unknown)}; expected {LIGHTNING!r} or {SOFTMAX!r}"
        )
    return types


def _rope(config: Any, head_dim: int) -> tuple[int, float]:
    params = _get(config, "rope_parameters", {}) or {}
    theta = float(params.get("rope_theta", _get(config, "rope_theta", 10000.0)))
    rotary_dim = _get(config, "rotary_dim")
    if rotary_dim is None:
        factor = params.get("partial_rotary_factor", _get(config, "partial_rotary_factor", 1.0))
        rotary_dim = int(head_dim * factor)
    if not 0 < rotary_dim <= head_dim or rotary_dim % 2:
        raise ValueError(f"rotary_dim={rotary_dim} must be even and in (0, head_dim={head_dim}]")
    return int(rotary_dim), theta


def architecture_of(config: Any) -> M1Architecture:
    """Normalise a ``minimax_m1`` or transformers ``minimax`` config into one description."""
    num_layers = int(config.num_hidden_layers)
    num_heads = int(config.num_attention_heads)
    head_dim = int(_get(config, "head_dim", config.hidden_size // num_heads))
    rotary_dim, theta = _rope(config, head_dim)
    scales = {
        key: float(_get(config, m1_key, _get(config, hf_key, 1.0)))
        for key, (m1_key, hf_key) in _SCALE_KEYS.items()
    }
    # transformers' MiniMax always uses the post-norm residual; M1 says so with `postnorm`.
    postnorm = bool(_get(config, "postnorm", getattr(config, "model_type", "") == "minimax"))
    return M1Architecture(
        vocab_size=int(config.vocab_size),
        hidden_size=int(config.hidden_size),
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=int(_get(config, "num_key_value_heads", num_heads)),
        head_dim=head_dim,
        layer_types=_layer_types(config, num_layers),
        rotary_dim=rotary_dim,
        rope_theta=theta,
        max_position=int(config.max_position_embeddings),
        rms_norm_eps=float(_get(config, "rms_norm_eps", 1e-5)),
        postnorm=postnorm,
        scales=scales,
        num_experts=int(config.num_local_experts),
        top_k=int(config.num_experts_per_tok),
        expert_intermediate=int(config.intermediate_size),
        shared_intermediate=int(_get(config, "shared_intermediate_size", 0)),
        tie_word_embeddings=bool(_get(config, "tie_word_embeddings", False)),
    )
