"""The GPU suite (`pytest -m gpu tests/gpu`, or scripts/gpu_check.sh on the H200): skipped
where there is no CUDA device."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items) -> None:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    if cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (the GPU suite)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Engines two tests can share, started once per session (each start costs 30-60 s of the
# suite's 10-minute budget). Only engines whose settings both tests accept are shared.


@pytest.fixture(scope="session")
def tiny_dir():
    from tests.gpu import cases

    return cases.model_dirs()["tiny-m1"]


@pytest.fixture(scope="session")
def fp32_eager_tiny(tiny_dir):
    """float32, eager, no prefix caching: the CPU-exactness engine, and the 'caching off' side
    of the prefix-caching test."""
    from tests.gpu.engines import gpu_engine

    with gpu_engine(tiny_dir, "float32", compiled=False, enable_prefix_caching=False) as llm:
        yield llm


@pytest.fixture(scope="session")
def bf16_eager_long(tiny_dir):
    """bf16, eager, a 20K-token prompt prefilled in one step (the Gluon kernel): the eager side
    of the compiled-vs-eager test, and the one-step side of the long-prompt test."""
    from tests.gpu import cases
    from tests.gpu.engines import gpu_engine

    with gpu_engine(
        tiny_dir,
        "bfloat16",
        compiled=False,
        max_model_len=cases.LONG_CONTEXT,
        max_num_batched_tokens=cases.LONG_CONTEXT,
    ) as llm:
        yield llm
