"""Whether this process's vLLM is one the plugin supports, as a line for `m1-mcp doctor`: the
MCP side asks here rather than reaching into the model package."""

from __future__ import annotations

from m1_runtime.model.vllm_compat import SUPPORTED_VLLM_TEXT, is_supported, vllm_version


def vllm_support_line() -> str:
    found = vllm_version()
    verdict = "yes" if is_supported(found) else "NO"
    return f"{verdict}: this plugin supports {SUPPORTED_VLLM_TEXT}, found {found or 'none'}"
