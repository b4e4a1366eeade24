"""e2e fixtures: async tests run on asyncio (vLLM's own loop)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
