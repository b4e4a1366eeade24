"""Triton backend vs the float64 recurrence: under TRITON_INTERPRET=1 on the CPU (small shapes,
in a subprocess so the interpreter setting can't leak into other tests' kernels), and at full
size on a GPU (marker `gpu`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
SUITE = HERE / "triton_suite.py"
ROOT = HERE.parent.parent


def _interpreter_usable() -> str | None:
    try:
        import triton  # noqa: F401
        from triton.runtime.interpreter import InterpretedFunction  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        return f"triton interpreter unavailable: {exc}"
    return None


def test_triton_kernels_under_interpreter() -> None:
    reason = _interpreter_usable()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, TRITON_INTERPRET="1", M1_KERNEL_DEVICE="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_kernels_on_gpu() -> None:
    env = dict(os.environ, M1_KERNEL_DEVICE="cuda")
    env.pop("TRITON_INTERPRET", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
