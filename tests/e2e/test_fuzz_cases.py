"""The fuzz generator and judge on their own (no server): deterministic, covering, and a judge
that does flag the SDK's mask for unanticipated exceptions."""

from __future__ import annotations

from pathlib import Path

from tests.e2e import fuzz, harness


def _schemas(calls: dict) -> dict:
    return {name: {"properties": {f: {} for f in args}, "required": list(args)[:1]}
            for name, args in calls.items()}  # fmt: skip


def test_cases_are_deterministic_bounded_and_cover_every_tool() -> None:
    calls = harness.tool_calls(Path("/nonexistent"))
    a = fuzz.generate(calls, _schemas(calls), 500, seed=7, max_valid=40)
    b = fuzz.generate(calls, _schemas(calls), 500, seed=7, max_valid=40)
    assert [(c.tool, c.what) for c in a] == [(c.tool, c.what) for c in b]
    assert len(a) == 500 and sum(c.valid for c in a) <= 40
    assert set(calls) <= {c.tool for c in a}
    kinds = {c.what.split(":")[-1].strip() for c in a}
    assert {"unknown tool", "unknown field", "no arguments", "special tokens"} <= kinds


def test_the_judge() -> None:
    assert fuzz.verdict("chat", False, "") is None
    assert fuzz.verdict("chat", True, "messages: at least one 'user' message") is None
    assert fuzz.verdict("chat", True, "Error executing tool chat") is not None
    assert fuzz.verdict("chat", True, "  ") is not None
    assert fuzz.verdict("chat", True, "Traceback (most recent call last): ...") is not None
