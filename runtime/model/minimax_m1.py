"""MiniMax-M1 (and MiniMax-Text-01) for vLLM: decoder layers, MoE, softmax attention, loading.

One decoder layer (post-norm form, which every released checkpoint uses)::

    h = input_layernorm(x);           x = h * attn_alpha + attn(h) * attn_beta
    h = post_attention_layernorm(x);  x = h * mlp_alpha + moe(h) * mlp_beta

Without post-norm the residual is the un-normed ``x``. ``attn`` is a lightning layer
(:mod:`m1_runtime.model.lightning`) or a softmax layer with partial RoPE, as ``layer_types`` says.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.distributed import get_pp_group, get_tensor_model_parallel_world_size
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.fused_moe import GateLinear
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import QKVParallelLinear, RowParallelLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.rotary_embedding import get_rope
from vllm.model_executor.layers.vocab_parallel_embedding import (
    ParallelLMHead,
    VocabParallelEmbedding,
)
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.interfaces import HasInnerState, IsHybrid, SupportsPP
from vllm.model_executor.models.utils import (
    PPMissingLayer,
    is_pp_missing_parameter,
    make_empty_intermediate_tensors_factory,
    make_layers,
)
from vllm.sequence import IntermediateTensors

from m1_runtime.model.config import M1Architecture, architecture_of
from m1_runtime.model.lightning import STATE_DTYPE, LightningAttention, lightning_state_shape
from m1_runtime.model.vllm_compat import fused_moe_factory, load_moe_weights


class SoftmaxAttention(nn.Module):
    """GQA softmax attention with RoPE on the first ``rotary_dim`` dims of each head."""

    def __init__(self, arch: M1Architecture, vllm_config: VllmConfig, prefix: str) -> None:
        super().__init__()
        tp_size = get_tensor_model_parallel_world_size()
        if arch.num_heads % tp_size:
            raise ValueError(
                f"{arch.num_heads} heads cannot be split over tensor parallel {tp_size}"
            )
        self.head_dim = arch.head_dim
        self.num_heads = arch.num_heads // tp_size
        # Fewer KV heads than ranks: each rank keeps a replica of one.
        self.num_kv_heads = max(1, arch.num_kv_heads // tp_size)
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        quant = vllm_config.quant_config

        self.qkv_proj = QKVParallelLinear(
            arch.hidden_size,
            arch.head_dim,
            arch.num_heads,
            arch.num_kv_heads,
            bias=False,
            quant_config=quant,
            prefix=f"{prefix}.qkv_proj",
        )
        self.o_proj = RowParallelLinear(
            arch.num_heads * arch.head_dim,
            arch.hidden_size,
            bias=False,
            quant_config=quant,
            prefix=f"{prefix}.o_proj",
        )
        self.rotary_emb = get_rope(
            arch.head_dim,
            max_position=arch.max_position,
            is_neox_style=True,  # M1 rotates halves of the rotary part
            rope_parameters={
                "rope_type": "default",
                "rope_theta": arch.rope_theta,
                "partial_rotary_factor": arch.rotary_dim / arch.head_dim,
            },
        )
        self.attn = Attention(
            self.num_heads,
            self.head_dim,
            self.head_dim**-0.5,
            num_kv_heads=self.num_kv_heads,
            cache_config=vllm_config.cache_config,
            quant_config=quant,
            prefix=f"{prefix}.attn",
        )

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.rotary_emb(positions, q, k)
        out, _ = self.o_proj(self.attn(q, k, v))
        return out


class SparseMoE(nn.Module):
    """Softmax router (float32), top-k renormalised, SwiGLU experts ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, arch: M1Architecture, vllm_config: VllmConfig, prefix: str) -> None:
        super().__init__()
        if arch.shared_intermediate:
            raise ValueError(
                "shared experts (shared_intermediate_size > 0) are not part of any released "
                "MiniMax-M1/Text-01 checkpoint and are not supported"
            )
        self.hidden_size = arch.hidden_size
        # The router takes no quant_config, so it stays unquantized whatever the quantization:
        # it is tiny (hidden x experts) and its float32 logits pick the experts, where a
        # rounding error changes which experts run rather than nudging a value. (No explicit
        # quant_config=None either: vLLM 0.26's GateLinear has no such argument.)
        self.gate = GateLinear(
            arch.hidden_size, arch.num_experts, out_dtype=torch.float32, prefix=f"{prefix}.gate"
        )
        self.experts = fused_moe_factory()(
            num_experts=arch.num_experts,
            top_k=arch.top_k,
            hidden_size=arch.hidden_size,
            intermediate_size=arch.expert_intermediate,
            renormalize=True,
            scoring_func="softmax",
            quant_config=vllm_config.quant_config,
            prefix=f"{prefix}.experts",
            ckpt_names=("w1", "w2", "w3"),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        router_logits, _ = self.gate(hidden_states)
        return self.experts(hidden_states, router_logits.float())


class DecoderLayer(nn.Module):
    def __init__(
        self, arch: M1Architecture, layer_idx: int, vllm_config: VllmConfig, prefix: str
    ) -> None:
        super().__init__()
        self.postnorm = arch.postnorm
        self.is_lightning = arch.is_lightning(layer_idx)
        kind = "linear" if self.is_lightning else "full"
        self.attn_alpha = arch.scales[f"{kind}_alpha"]
        self.attn_beta = arch.scales[f"{kind}_beta"]
        self.mlp_alpha = arch.scales["mlp_alpha"]
        self.mlp_beta = arch.scales["mlp_beta"]

        self.input_layernorm = RMSNorm(arch.hidden_size, eps=arch.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(arch.hidden_size, eps=arch.rms_norm_eps)
        attn_prefix = f"{prefix}.self_attn"
        if self.is_lightning:
            self.self_attn: nn.Module = LightningAttention(
                arch, layer_idx, vllm_config, attn_prefix
            )
        else:
            self.self_attn = SoftmaxAttention(arch, vllm_config, attn_prefix)
        self.block_sparse_moe = SparseMoE(arch, vllm_config, f"{prefix}.block_sparse_moe")

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.input_layernorm(x)
        attn = self.self_attn(h) if self.is_lightning else self.self_attn(positions, h)
        x = (h if self.postnorm else x) * self.attn_alpha + attn * self.attn_beta
        h = self.post_attention_layernorm(x)
        moe = self.block_sparse_moe(h)
        return (h if self.postnorm else x) * self.mlp_alpha + moe * self.mlp_beta


# Compiled by vLLM (CUDA graphs on GPUs); the lightning op is opaque and splits the graph.
@support_torch_compile(
    dynamic_arg_dims={
        "input_ids": 0,
        "positions": -1,
        "intermediate_tensors": 0,
        "inputs_embeds": 0,
    }
)
class MiniMaxM1Model(nn.Module):
    """The decoder stack. Under pipeline parallelism each stage builds only its own layers
    (the others are placeholders), so a lightning layer's state slots live on the stage that
    runs it; the first stage embeds, the last normalises, and the hidden states travel between
    stages (the residual stream is the only tensor a layer passes on)."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        arch = architecture_of(vllm_config.model_config.hf_config)
        self.arch = arch
        pp = get_pp_group()
        # The embedding and the LM head take no quant_config: they stay in the model dtype
        # whatever the quantization (vLLM's online fp8 and experts_int8 would leave them so too).
        self.embed_tokens = (
            VocabParallelEmbedding(arch.vocab_size, arch.hidden_size)
            if pp.is_first_rank
            else PPMissingLayer()
        )
        self.start_layer, self.end_layer, self.layers = make_layers(
            arch.num_layers,
            lambda prefix: DecoderLayer(arch, int(prefix.rsplit(".", 1)[1]), vllm_config, prefix),
            prefix=f"{prefix}.layers",
        )
        _check_stage_layers(arch, self.start_layer, self.end_layer)
        last = pp.is_last_rank
        self.norm = RMSNorm(arch.hidden_size, eps=arch.rms_norm_eps) if last else PPMissingLayer()
        self.make_empty_intermediate_tensors = make_empty_intermediate_tensors_factory(
            ["hidden_states"], arch.hidden_size
        )

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor | IntermediateTensors:
        pp = get_pp_group()
        if pp.is_first_rank:
            x = inputs_embeds if inputs_embeds is not None else self.embed_tokens(input_ids)
        else:
            assert intermediate_tensors is not None
            x = intermediate_tensors["hidden_states"]
        for layer in self.layers[self.start_layer : self.end_layer]:
            x = layer(positions, x)
        if not pp.is_last_rank:
            return IntermediateTensors({"hidden_states": x})
        return self.norm(x)


def _check_stage_layers(arch: M1Architecture, start: int, end: int) -> None:
    """Refuse a pipeline stage whose layer range holds no softmax layer: vLLM makes
    every worker agree on one KV cache layout, and a stage of lightning layers alone has no
    attention layer to say which (its engine fails with "Workers disagree on supported KV cache
    layouts")."""
    pp = get_pp_group()
    softmax = [not arch.is_lightning(i) for i in range(arch.num_layers)]
    if pp.world_size > 1 and any(softmax) and not any(softmax[start:end]):
        raise ValueError(
            f"pipeline stage {pp.rank_in_group} would hold layers {start}-{end - 1}, which has no "
            "softmax layer; every stage needs one. Choose the split with "
            "VLLM_PP_LAYER_PARTITION (layers per stage, e.g. '12,4'), or fewer stages"
        )


# Softmax layers' q/k/v projections load into one fused QKV matrix.
_STACKED = {".q_proj.": "q", ".k_proj.": "k", ".v_proj.": "v"}


class MiniMaxM1ForCausalLM(nn.Module, HasInnerState, IsHybrid, SupportsPP):
    """vLLM entry point, registered for MiniMaxM1 / MiniMaxText01 / MiniMax architectures."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        self.config = vllm_config.model_config.hf_config
        self.model = MiniMaxM1Model(vllm_config=vllm_config, prefix="model")
        arch = self.model.arch
        pp = get_pp_group()
        if pp.is_last_rank:
            self.lm_head = ParallelLMHead(arch.vocab_size, arch.hidden_size, prefix="lm_head")
            # Tied to the embedding when both sit on this stage; on a last stage without the
            # embedding, the head keeps its own copy, loaded from the embedding's tensor.
            if arch.tie_word_embeddings and pp.is_first_rank:
                self.lm_head = self.lm_head.tie_weights(self.model.embed_tokens)
        else:
            self.lm_head = PPMissingLayer()
        self.logits_processor = LogitsProcessor(arch.vocab_size)
        self.make_empty_intermediate_tensors = self.model.make_empty_intermediate_tensors

    # --- vLLM model interface ----------------------------------------------------------
    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor | IntermediateTensors:
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    # --- hybrid state (read by vLLM before the model exists) ---------------------------
    @classmethod
    def get_mamba_state_shape_from_config(cls, vllm_config: VllmConfig):
        arch = architecture_of(vllm_config.model_config.hf_config)
        return (lightning_state_shape(arch, vllm_config.parallel_config.tensor_parallel_size),)

    @classmethod
    def get_mamba_state_dtype_from_config(cls, vllm_config: VllmConfig):
        return (STATE_DTYPE,)

    @classmethod
    def get_mamba_state_copy_func(cls):
        from vllm.model_executor.layers.mamba.mamba_utils import MambaStateCopyFuncCalculator

        return MambaStateCopyFuncCalculator.linear_attention_state_copy_func()

    # --- weights ------------------------------------------------------------------------
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load M1's own names or transformers' in-library MiniMax names.

        Any checkpoint tensor this model has no place for, and any parameter the checkpoint
        leaves unset, is an error that names them: a model with random holes must never serve.
        """
        params = dict(self.named_parameters())
        moe_layers = {
            name.removesuffix(".experts"): module
            for name, module in self.named_modules()
            if name.endswith("block_sparse_moe.experts")
        }
        loaded: set[str] = set()
        unknown: list[str] = []
        # A last pipeline stage without the embedding holds the tied head's own copy.
        head_copy = (
            self.model.arch.tie_word_embeddings
            and "lm_head.weight" in params
            and "model.embed_tokens.weight" not in params
        )
        for name, tensor in weights:
            if name.endswith(_DERIVED):  # recomputed here, not loaded
                continue
            if head_copy and name == "model.embed_tokens.weight":
                param = params["lm_head.weight"]
                getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                loaded.add("lm_head.weight")
                continue
            if is_pp_missing_parameter(name, self):  # another pipeline stage's tensor
                continue
            if ".block_sparse_moe.experts." in name:
                owner, _, rest = name.partition(".experts.")
                experts = moe_layers.get(owner)
                if experts is None:
                    unknown.append(name)
                    continue
                loaded.update(
                    f"{owner}.experts.{p}" for p in load_moe_weights(experts, [(rest, tensor)])
                )
                continue
            stacked = next((s for s in _STACKED if s in name), None)
            if stacked is not None:
                target = name.replace(stacked, ".qkv_proj.")
                if target not in params:
                    unknown.append(name)
                    continue
                params[target].weight_loader(params[target], tensor, _STACKED[stacked])
                loaded.add(target)
                continue
            if name not in params:
                unknown.append(name)
                continue
            param = params[name]
            getattr(param, "weight_loader", default_weight_loader)(param, tensor)
            loaded.add(name)

        if unknown:
            raise ValueError(f"checkpoint tensors with no place in MiniMax-M1: {_brief(unknown)}")
        missing = missing_weights(params, loaded, self.model.arch.tie_word_embeddings)
        if missing:
            raise ValueError(f"checkpoint is missing weights: {_brief(missing)}")
        return loaded


class MiniMaxM1SoftmaxForCausalLM(MiniMaxM1ForCausalLM):
    """The same model for configs whose every layer is softmax (the all-softmax baseline of
    benchmarks/gpu_serving.py): vLLM must not treat it as hybrid, since it has no state
    layers for the hybrid machinery to find."""

    is_hybrid = False
    has_inner_state = False

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        arch = architecture_of(vllm_config.model_config.hf_config)
        if arch.num_lightning_layers:
            raise ValueError(
                f"{type(self).__name__} is for all-softmax configs, but this one has "
                f"{arch.num_lightning_layers} lightning layers; use MiniMaxM1ForCausalLM"
            )
        super().__init__(vllm_config=vllm_config, prefix=prefix)


# Buffers that exporters save beside the weights (transformers writes its lightning decay tables
# and RoPE frequencies): derived from the config, recomputed here, never loaded. Every other name
# loads as it is: M1's checkpoints and transformers' `save_pretrained` use the same names.
_DERIVED = (".rotary_emb.inv_freq", ".slope_rate", ".query_decay", ".key_decay", ".diagonal_decay")


# Under a quantization config (fp8) vLLM's attention gains calibration scales for q, k, v and
# the probabilities. A bf16 checkpoint quantized as it loads has none: they keep vLLM's 1.0.
_ATTENTION_SCALES = (".attn.q_scale", ".attn.k_scale", ".attn.v_scale", ".attn.prob_scale")


def missing_weights(params: Iterable[str], loaded: set[str], tied_embeddings: bool) -> list[str]:
    """The model's parameters that the checkpoint should have filled and did not."""
    return [
        name
        for name in sorted(set(params) - loaded)
        if not (tied_embeddings and name.startswith("lm_head."))
        and not name.endswith(_ATTENTION_SCALES)
    ]


def _brief(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" … and {len(names) - limit} more" if len(names) > limit else "")
