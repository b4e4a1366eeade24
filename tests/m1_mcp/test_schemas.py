"""Guided-decoding schemas are bounded, and their token bound covers what they allow."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from m1_mcp.tools import code_review, documents, reasoning
from m1_mcp.tools.guided_json import guided_schema, schema_budget


class _Tiny(BaseModel):
    a: str = Field(max_length=3)
    b: list[Annotated[int, Field(ge=-(10**19), le=5)]] = Field(max_length=2)


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

    class OpenInt(BaseModel):
        n: int

    with pytest.raises(KeyError):
        schema_budget(guided_schema(Loose))
    with pytest.raises(ValueError, match="integer without minimum and maximum"):
        schema_budget(guided_schema(OpenInt))


@pytest.mark.parametrize(
    "model",
    [
        reasoning._PracticePayload,
        documents.DocSummary,
        documents.DocQA,
        documents.DocInsights,
    ],
)
def test_tool_payloads_are_bounded(model: type[BaseModel]) -> None:
    budget = schema_budget(guided_schema(model))
    assert 50 < budget < 8192  # fits the default context next to a prompt


def test_review_schema_bounds_line_numbers() -> None:
    schema = code_review.review_schema(12)
    line = schema["$defs"]["Finding"]["properties"]["line"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 12}.items() <= line[0].items()
    budget = schema_budget(schema)
    assert 50 < budget < 8192  # fits the default context next to a prompt


def test_split_tokens_covers_everything_with_overlap() -> None:
    ids = list(range(1000))
    windows = documents.split_tokens(ids, 300, 50)
    assert all(len(w) <= 300 for w in windows)
    assert windows[0][0] == 0 and windows[-1][-1] == 999
    for left, right in zip(windows, windows[1:], strict=False):
        assert left[-50:] == right[:50]
    assert documents.split_tokens(ids[:10], 300, 50) == [ids[:10]]
