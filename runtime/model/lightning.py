"""M1's lightning (linear) attention layer inside vLLM's hybrid state machinery.

vLLM gives every request a state slot per lightning layer (a ``MambaBase`` layer with one
float32 ``[H, D, D]`` state) and orders each batch decodes first, then prefills. This layer
projects, splits that batch, and hands packed tensors to :mod:`kernels`; it knows nothing about
how the recurrence is computed.

The attention runs inside a custom op so that torch.compile and CUDA graphs treat it as an
opaque, graph-splitting call: its work depends on per-step metadata that a captured graph
cannot see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vllm.config import VllmConfig, get_current_vllm_config
from vllm.distributed import (
    get_tensor_model_parallel_rank,
    get_tensor_model_parallel_world_size,
    tensor_model_parallel_all_reduce,
)
from vllm.forward_context import get_forward_context
from vllm.model_executor.layers.linear import ColumnParallelLinear, RowParallelLinear
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.linear_attn import LinearAttentionMetadata
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum

import m1_kernels as kernels
from m1_kernels.lightning.slopes import lightning_slopes
from m1_runtime.model.config import M1Architecture
from m1_runtime.model.op_names import LIGHTNING_OP_NAME

# The recurrence's state stays float32 whatever the model dtype: it sums thousands of
# decayed outer products, and bf16 would lose the slow-decaying heads' history.
STATE_DTYPE = torch.float32


def lightning_state_shape(arch: M1Architecture, tp_size: int) -> tuple[int, int, int]:
    return (arch.num_heads // tp_size, arch.head_dim, arch.head_dim)


class ShardedGroupNorm(nn.Module):
    """RMSNorm over all H*D features of a token while the heads are split across ranks.

    Each rank holds H/tp heads, so the mean square is summed over ranks before normalising.
    """

    def __init__(self, features: int, eps: float, tp_size: int, tp_rank: int) -> None:
        super().__init__()
        self.tp_size = tp_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features // tp_size))
        shard = features // tp_size

        def load_shard(param: nn.Parameter, loaded: torch.Tensor) -> None:
            param.data.copy_(loaded[tp_rank * shard : (tp_rank + 1) * shard])

        self.weight.weight_loader = load_shard

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        mean_square = x.pow(2).mean(dim=-1, keepdim=True)
        if self.tp_size > 1:
            mean_square = tensor_model_parallel_all_reduce(mean_square) / self.tp_size
        return x * torch.rsqrt(mean_square + self.eps) * self.weight.float()


class LightningAttention(nn.Module, MambaBase):
    """One lightning layer: silu(qkv) -> recurrence -> RMSNorm -> sigmoid gate -> out_proj."""

    def __init__(
        self, arch: M1Architecture, layer_idx: int, vllm_config: VllmConfig, prefix: str
    ) -> None:
        super().__init__()
        tp_size = get_tensor_model_parallel_world_size()
        tp_rank = get_tensor_model_parallel_rank()
        if arch.num_heads % tp_size:
            raise ValueError(
                f"{arch.num_heads} lightning heads cannot be split over tensor parallel {tp_size}"
            )
        self.prefix = prefix
        self.arch = arch
        self.tp_size = tp_size
        self.num_local_heads = arch.num_heads // tp_size
        self.head_dim = arch.head_dim
        inner = arch.num_heads * arch.head_dim
        quant = vllm_config.quant_config

        # qkv_proj's output is laid out per head as [q | k | v], so a contiguous column shard is
        # a whole group of heads: the split below is the same on every rank.
        self.qkv_proj = ColumnParallelLinear(
            arch.hidden_size, 3 * inner, bias=False, quant_config=quant, prefix=f"{prefix}.qkv_proj"
        )
        self.output_gate = ColumnParallelLinear(
            arch.hidden_size, inner, bias=False, quant_config=quant, prefix=f"{prefix}.output_gate"
        )
        self.out_proj = RowParallelLinear(
            inner, arch.hidden_size, bias=False, quant_config=quant, prefix=f"{prefix}.out_proj"
        )
        self.norm = ShardedGroupNorm(inner, arch.lightning_norm_eps, tp_size, tp_rank)

        slopes = lightning_slopes(arch.num_heads, layer_idx, arch.num_layers)
        local = slopes[tp_rank * self.num_local_heads : (tp_rank + 1) * self.num_local_heads]
        self.register_buffer("slopes", torch.tensor(local, dtype=torch.float32), persistent=False)

        context = get_current_vllm_config().compilation_config.static_forward_context
        if prefix in context:
            raise ValueError(f"duplicate layer name {prefix}")
        context[prefix] = self
        self.kv_cache = (torch.tensor([]),)

    # --- MambaBase: what vLLM needs to allocate and route this layer's state -------------
    @property
    def mamba_type(self) -> MambaAttentionBackendEnum:
        return MambaAttentionBackendEnum.LINEAR

    def get_state_shape(self) -> tuple[tuple[int, int, int]]:
        return (lightning_state_shape(self.arch, self.tp_size),)

    def get_state_dtype(self) -> tuple[torch.dtype]:
        return (STATE_DTYPE,)

    # --- forward ------------------------------------------------------------------------
    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = torch.empty_like(hidden_states)
        # The op registered at the bottom of this module under LIGHTNING_OP_NAME.
        torch.ops.vllm.m1_lightning_attention(hidden_states, output, self.prefix)
        return output

    def run(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        metadata = self._metadata()
        n = hidden_states.shape[0]
        if metadata is not None:
            n = metadata.num_decode_tokens + metadata.num_prefill_tokens
        x = hidden_states[:n]

        qkv, _ = self.qkv_proj(x)
        # silu in float32, then back to the model dtype: the kernels take bf16 q/k/v at full
        # speed and still accumulate the state in float32.
        qkv = F.silu(qkv.float()).to(qkv.dtype).view(n, self.num_local_heads, 3 * self.head_dim)
        q, k, v = qkv.split(self.head_dim, dim=-1)

        if metadata is None:
            # vLLM's profiling and warm-up passes carry no metadata and no state: the values
            # are never read, only the shapes and the memory they take matter.
            mixed = torch.zeros_like(q)
        else:
            mixed = self._attend(q, k, v, metadata)

        y = self.norm(mixed.reshape(n, -1))
        gate, _ = self.output_gate(x)
        y = torch.sigmoid(gate.float()) * y
        out, _ = self.out_proj(y.to(x.dtype))
        output[:n] = out
        output[n:] = 0  # padding rows (CUDA-graph batches): keep them finite

    def _metadata(self) -> LinearAttentionMetadata | None:
        metadata = get_forward_context().attn_metadata
        if isinstance(metadata, dict):
            return metadata.get(self.prefix)
        return None

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, md: LinearAttentionMetadata
    ) -> torch.Tensor:
        """Decodes (one token each) come first in the batch, then the prefill chunks."""
        states = self.kv_cache[0]
        slots = md.state_indices_tensor
        decodes, prefills = md.num_decodes, md.num_prefills
        split = md.num_decode_tokens
        out = torch.empty_like(q)
        if decodes:
            out[:split] = kernels.lightning_decode(
                q[:split], k[:split], v[:split], self.slopes, states, slots[:decodes]
            )
        if prefills:
            starts = md.query_start_loc[decodes : decodes + prefills + 1]
            cu_seqlens = starts - starts[0]
            query_lens = cu_seqlens[1:] - cu_seqlens[:-1]
            # A chunk with nothing before it starts a new sequence: its slot may hold the
            # state of a finished request and must be ignored, not continued.
            fresh = (md.seq_lens[decodes : decodes + prefills] - query_lens) == 0
            out[split:] = kernels.lightning_prefill(
                q[split:],
                k[split:],
                v[split:],
                self.slopes,
                states,
                slots[decodes : decodes + prefills],
                cu_seqlens,
                fresh,
            )
        return out


def _lightning_op(hidden_states: torch.Tensor, output: torch.Tensor, layer_name: str) -> None:
    layer = get_forward_context().no_compile_layers[layer_name]
    layer.run(hidden_states, output)


def _lightning_op_fake(hidden_states: torch.Tensor, output: torch.Tensor, layer_name: str) -> None:
    return None


direct_register_custom_op(
    op_name=LIGHTNING_OP_NAME,
    op_func=_lightning_op,
    mutates_args=["output"],
    fake_impl=_lightning_op_fake,
)
