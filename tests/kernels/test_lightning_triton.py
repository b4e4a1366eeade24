"""The Triton backend against the float64 recurrence (cases in triton_cases.py), each case its
own pytest case: under Triton's interpreter on the CPU (small shapes, in a worker process so
the interpreter setting cannot reach other tests' kernels), and at full size on a GPU (marker
`gpu`, in this process)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.kernels.triton_cases import INTERPRETER, Case, cases, gpu_target

ROOT = Path(__file__).resolve().parents[2]
CASE_TIMEOUT_S = 300  # the slowest interpreter case takes a few seconds on a loaded 2-core box


def _interpreter_missing() -> str | None:
    try:
        from triton.runtime.interpreter import InterpretedFunction  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        return f"triton interpreter unavailable: {exc}"
    return None


class InterpreterWorker:
    """A `tests.kernels.interpreter_worker` process, restarted after a crash or a timeout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.log = tempfile.TemporaryFile(mode="w+")  # the worker's stderr

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, TRITON_INTERPRET="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return subprocess.Popen(
            [sys.executable, "-m", "tests.kernels.interpreter_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )

    def _log_tail(self, start: int) -> str:
        self.log.seek(start)
        return self.log.read()[-4000:]

    def run(self, case_id: str) -> None:
        """Run one case; pytest.fail with the worker's report when it did not pass."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        log_start = self.log.seek(0, os.SEEK_END)
        self.proc.stdin.write(json.dumps(case_id) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], CASE_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line:  # a crash or a hang: this case fails, the next one gets a fresh worker
            why = "no answer within the timeout" if not ready else "the worker exited"
            self.close()
            pytest.fail(f"{case_id}: {why}\n{self._log_tail(log_start)}", pytrace=False)
        answer = json.loads(line)
        assert answer["id"] == case_id, f"answer for {answer['id']}, asked {case_id}"
        if not answer["passed"]:
            pytest.fail(answer["report"] + self._log_tail(log_start), pytrace=False)

    def close(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def interpreter() -> Iterator[InterpreterWorker]:
    reason = _interpreter_missing()
    if reason:
        pytest.skip(reason)
    worker = InterpreterWorker()
    yield worker
    worker.close()
    worker.log.close()


def _params(target_cases: list[Case]) -> list:
    def marks(case: Case) -> list:
        return [pytest.mark.skip(reason=case.skip)] if case.skip else []

    return [pytest.param(case, id=case.id, marks=marks(case)) for case in target_cases]


@pytest.mark.parametrize("case", _params(cases(INTERPRETER)))
def test_interpreted(case: Case, interpreter: InterpreterWorker) -> None:
    interpreter.run(case.id)


GPU_CASES = (
    _params(cases(gpu_target()))
    if torch.cuda.is_available()
    else [pytest.param(None, id="no-cuda", marks=pytest.mark.skip(reason="needs a CUDA device"))]
)


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_on_gpu(case: Case) -> None:
    case.run()


def test_worker_reports_a_failing_case(interpreter: InterpreterWorker) -> None:
    """A case that raises in the worker fails its pytest case, with the worker's traceback."""
    with pytest.raises(pytest.fail.Exception, match="KeyError: 'no-such-case'"):
        interpreter.run("no-such-case")
