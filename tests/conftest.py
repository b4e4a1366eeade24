"""Shared test set-up: vLLM logs to stderr at WARNING, and async tests run on asyncio (vLLM's
own loop)."""

from __future__ import annotations

import os

import pytest

# vLLM reads these at import time; tests import it lazily, after this module.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
