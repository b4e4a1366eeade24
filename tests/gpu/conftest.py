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
