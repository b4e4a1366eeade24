"""Shared test set-up: vLLM logs to stderr at WARNING, and engines are built the same way."""

from __future__ import annotations

import os

# vLLM reads these at import time; tests import it lazily, after this module.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
