"""M1 chat format: rendering matches the tokenizer's template; parsing of model output."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from m1_runtime.chat import m1 as chat
from m1_runtime.chat.m1 import Message, ToolCall

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "configs" / "models" / "tiny-m1"

CONVERSATIONS = [
    [Message(role="user", content="What is 2+2?")],
    [
        Message(role="system", content="You are a helpful assistant."),
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello! How can I help?"),
        Message(role="user", content="Weather in Paris?"),
    ],
    [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather?"),
        Message(
            role="assistant",
            content="Let me check.",
            tool_calls=[ToolCall(name="get_weather", arguments={"city": "Paris", "days": 2})],
        ),
        Message(role="tool", name="get_weather", content='{"temp": 21}'),
    ],
]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


@cache
def _tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("tools", [None, TOOLS])
def test_render_matches_tokenizer_chat_template(index: int, tools: list | None) -> None:
    tok = _tokenizer()
    messages = CONVERSATIONS[index]
    as_dicts = []
    for m in messages:
        d = {"role": m.role, "content": m.content}
        if m.name:
            d["name"] = m.name
        if m.tool_calls:
            d["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
        as_dicts.append(d)
    expected = tok.apply_chat_template(
        as_dicts, tools=tools, tokenize=False, add_generation_prompt=True
    )
    assert chat.render(messages, tools) == expected


def test_render_structure_and_thinking_switch() -> None:
    text = chat.render([Message(role="user", content="x")], thinking=None)
    assert text.startswith("<begin_of_document><beginning_of_sentence>user name=user\nx")
    assert text.endswith("<beginning_of_sentence>ai name=assistant\n")
    assert chat.render([Message(role="user", content="x")], thinking=True).endswith("<think>\n")
    off = chat.render([Message(role="user", content="x")], thinking=False)
    assert off.endswith("ai name=assistant\n<think>\n\n</think>\n\n")


def test_split_reasoning() -> None:
    assert chat.split_reasoning("<think>\nsteps\n</think>\nanswer") == ("steps", "answer")
    assert chat.split_reasoning("just an answer") == ("", "just an answer")
    # The prompt opened <think>: the text starts inside the reasoning.
    assert chat.split_reasoning("a\n</think>\nb", prompt_opened_think=True) == ("a", "b")
    # Budget ran out inside the reasoning: all of it is reasoning, no answer.
    assert chat.split_reasoning("<think>unfinished") == ("unfinished", "")


def test_parse_tool_calls_one_per_line_and_reports_malformed() -> None:
    answer = (
        "Checking.\n<tool_calls>\n"
        '{"name": "a", "arguments": {"x": 1}}\n'
        "{not json}\n"
        '{"arguments": {}}\n'
        '{"name": "b", "arguments": "{\\"y\\": 2}"}\n'
        '{"name": "c", "arguments": [1]}\n'
        "</tool_calls>"
    )
    parsed = chat.parse_tool_calls(answer)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert len(parsed.errors) == 3
    assert "line 2 is not JSON" in parsed.errors[0]
    assert "no string 'name'" in parsed.errors[1]
    assert "not an object" in parsed.errors[2]
    assert parsed.content == "Checking."


def test_tool_calls_inside_think_are_ignored() -> None:
    raw = '<think>\n<tool_calls>\n{"name": "hidden", "arguments": {}}\n</tool_calls>\n</think>\nok'
    reasoning, answer = chat.split_reasoning(raw)
    parsed = chat.parse_tool_calls(answer)
    assert parsed.calls == [] and parsed.errors == [] and parsed.content == "ok"
    assert "hidden" in reasoning


def test_unterminated_tool_block_still_parsed() -> None:
    parsed = chat.parse_tool_calls('<tool_calls>\n{"name": "a", "arguments": {}}\n')
    assert [c.name for c in parsed.calls] == ["a"]
