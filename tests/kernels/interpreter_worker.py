"""Runs Triton kernel cases under the interpreter, one per request, for test_lightning_triton.py.

    TRITON_INTERPRET=1 python -m tests.kernels.interpreter_worker

Triton decides at decoration time whether a kernel is compiled or interpreted, and the setting
cannot be undone in a process, so the interpreter cases run here rather than in the pytest
process (whose other tests must see the real kernels). One long-lived process for all cases
keeps the cost of importing torch and Triton to once per test session.

Protocol, one JSON line each way: the parent writes a case id (`triton_cases.cases`, interpreter
target); the worker answers {"id", "passed", "report"} (report: the traceback when it failed).
Anything the cases print goes to stderr, so stdout carries only answers.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> int:
    if os.environ.get("TRITON_INTERPRET") != "1":
        print("interpreter_worker needs TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints, including those from C code, go to stderr
    from tests.kernels.triton_cases import INTERPRETER, cases

    by_id = {case.id: case for case in cases(INTERPRETER)}
    for line in sys.stdin:
        case_id = json.loads(line)
        try:
            by_id[case_id].run()
            answer = {"id": case_id, "passed": True, "report": ""}
        except Exception:
            answer = {"id": case_id, "passed": False, "report": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
