"""The one module that knows vLLM's release differences answers for the installed vLLM."""

from __future__ import annotations

import pytest

from m1_runtime.model import vllm_compat


@pytest.mark.parametrize(
    ("text", "supported"),
    [
        ("0.26.0", True),
        ("0.32.0+cpu", True),
        ("0.34.1", True),
        ("0.25.2", False),
        ("0.35.0", False),
        ("1.0.0", False),
        ("garbage", False),
        (None, False),
    ],
)
def test_supported_range(text, supported) -> None:
    assert vllm_compat.is_supported(text) is supported


def test_installed_vllm_is_supported() -> None:
    assert vllm_compat.is_supported(vllm_compat.vllm_version())


def test_moe_factory_builds_vllm_moe_layers() -> None:
    from vllm.model_executor.layers import fused_moe

    factory = vllm_compat.fused_moe_factory()
    expected = getattr(fused_moe, "FusedMoEFactory", None) or fused_moe.FusedMoE
    assert factory is expected and callable(factory)


def test_refusals_include_vllm_validation_errors() -> None:
    from vllm.exceptions import VLLMValidationError

    assert issubclass(VLLMValidationError, vllm_compat.refusal_errors())
    assert not issubclass(RuntimeError, vllm_compat.refusal_errors())
