"""Guided-decoding schemas are bounded, and their token bound covers what they allow."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from m1_mcp.tools import code_review, documents, reasoning
from m1_mcp.tools.common import guided_schema, schema_budget


class _Tiny(BaseModel):
    a: str = Field(max_length=3)
    b: list[int] = Field(max_length=2)


def test_budget_bounds_the_longest_document() -> None:
    schema = guided_schema(_Tiny)
    assert schema["required"] == ["a", "b"] and schema["additionalProperties"] is False
    # Every token is at least one character, so the longest compact JSON the schema allows,
    # written with two-character escapes, bounds the token count.
    longest = json.dumps({"a": "\n" * 3, "b": [-(10**19)] * 2}, separators=(",", ":"))
    assert schema_budget(schema) >= len(longest)


def test_unbounded_schema_is_refused() -> None:
    class Loose(BaseModel):
        text: str

    with pytest.raises(KeyError):
        schema_budget(guided_schema(Loose))


@pytest.mark.parametrize(
    "model",
    [
        reasoning._PracticePayload,
        documents.DocSummary,
        documents.DocQA,
        documents.DocInsights,
        code_review._ReviewPayload,
    ],
)
def test_tool_payloads_are_bounded(model: type[BaseModel]) -> None:
    budget = schema_budget(guided_schema(model))
    assert 50 < budget < 8192  # fits the default context next to a prompt


def test_split_tokens_covers_everything_with_overlap() -> None:
    ids = list(range(1000))
    windows = documents.split_tokens(ids, 300, 50)
    assert all(len(w) <= 300 for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == 999
    for left, right in zip(windows, windows[1:], strict=False):
        assert left[-50:] == right[:50]
    assert documents.split_tokens(ids[:10], 300, 50) == [ids[:10]]
