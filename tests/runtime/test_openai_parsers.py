"""The `minimax_m1` tool-call and reasoning parsers as vLLM's OpenAI server drives them: the
real parser classes on M1-format text, whole and streamed in deltas split at every point."""

from __future__ import annotations

import json

import pytest

from m1_runtime.engine.checkpoints import preset_dir

CALL_A = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}'
CALL_B = '{"name": "add", "arguments": {"a": 2, "b": 40}}'

# (model output, prompt opened <think>, reasoning, content, calls as (name, arguments))
CASES = [
    ("<think>\nSum them.\n</think>\n\n42", False, "Sum them.", "42", []),
    ("Sum them.\n</think>\nIt is 42.", True, "Sum them.", "It is 42.", []),
    ("Just an answer.", False, None, "Just an answer.", []),
    (
        f"<think>\nweather first\n</think>\nChecking.\n<tool_calls>\n{CALL_A}\n{CALL_B}\n"
        "</tool_calls>",
        False,
        "weather first",
        "Checking.",
        [("get_weather", {"city": "Paris", "unit": "C"}), ("add", {"a": 2, "b": 40})],
    ),
    # A call written while thinking is not a call.
    (
        f"<think>\n<tool_calls>\n{CALL_B}\n</tool_calls>\n</think>\nNo call.",
        False,
        f"<tool_calls>\n{CALL_B}\n</tool_calls>",
        "No call.",
        [],
    ),
    # A malformed line is reported in the content; the good one still comes through.
    (
        f"<tool_calls>\n{{not json\n{CALL_B}</tool_calls>",
        False,
        None,
        "{not json",
        [("add", {"a": 2, "b": 40})],
    ),
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(preset_dir("tiny-m1")))


@pytest.fixture(scope="module")
def request_():
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    return ChatCompletionRequest(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "add", "parameters": {}}}],
    )


def _parsers(tokenizer, opened: bool):
    from m1_runtime.model.openai_parsers import MiniMaxM1ReasoningParser, MiniMaxM1ToolParser

    kwargs = {"chat_template_kwargs": {"enable_thinking": True}} if opened else {}
    return MiniMaxM1ReasoningParser(tokenizer, **kwargs), MiniMaxM1ToolParser(tokenizer, None)


def _calls(tool_calls) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in tool_calls]


def test_plugin_registers_the_parser_names() -> None:
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    from m1_runtime.model.openai_parsers import MiniMaxM1ReasoningParser, MiniMaxM1ToolParser
    from m1_runtime.model.plugin import register

    register()
    register()  # idempotent: every process vLLM starts calls it
    assert {"minimax_m1", "minimax"} <= set(ToolParserManager.list_registered())
    assert "minimax_m1" in ReasoningParserManager.list_registered()
    assert ToolParserManager.get_tool_parser("minimax_m1") is MiniMaxM1ToolParser
    assert ReasoningParserManager.get_reasoning_parser("minimax_m1") is MiniMaxM1ReasoningParser


@pytest.mark.parametrize(("text", "opened", "reasoning", "content", "calls"), CASES)
def test_whole_output(tokenizer, request_, text, opened, reasoning, content, calls) -> None:
    reasoner, tools = _parsers(tokenizer, opened)
    got_reasoning, rest = reasoner.extract_reasoning(text, request_)
    assert got_reasoning == reasoning
    info = tools.extract_tool_calls(rest or "", request_)
    assert info.tools_called == bool(calls)
    assert _calls(info.tool_calls) == calls
    assert (info.content or "").strip() == content


def _stream(tokenizer, request_, text: str, opened: bool, cuts: list[int]):
    """Drive the parsers the way vLLM's server does: reasoning until it ends, then the tool
    parser on the text after it. Returns (reasoning, content, calls, deltas with tool calls)."""
    reasoner, tools = _parsers(tokenizer, opened)
    reasoning, content, calls = "", "", []
    prev, tool_prev, in_tools = "", "", False
    bounds = [0, *cuts, len(text)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        cur = text[:b]
        delta_text = text[a:b]
        if not in_tools:
            msg = reasoner.extract_reasoning_streaming(prev, cur, delta_text, [], [], [])
            if msg is not None and msg.reasoning:
                reasoning += msg.reasoning
            if reasoner.is_reasoning_end_streaming([], []):
                in_tools = True
                delta_text = (msg.content if msg is not None else "") or ""
                tool_prev, tool_cur = "", delta_text
            else:
                prev = cur
                continue
        else:
            tool_cur = tool_prev + delta_text
        out = tools.extract_tool_calls_streaming(
            tool_prev, tool_cur, delta_text, [], [], [], request_
        )
        tool_prev = tool_cur
        prev = cur
        if out is not None:
            content += out.content or ""
            for d in out.tool_calls:
                assert d.index == len(calls) and d.id and d.type == "function"
                calls.append((d.function.name, json.loads(d.function.arguments)))
    assert tools.get_remaining_unstreamed_args() == ""  # nothing left for the server to add
    return reasoning, content, calls


@pytest.mark.parametrize(("text", "opened", "reasoning", "content", "calls"), CASES)
def test_streaming_split_at_every_point(
    tokenizer, request_, text, opened, reasoning, content, calls
) -> None:
    # One cut anywhere (every tag and JSON line split at each of its characters), and one
    # character a delta.
    for cuts in [[i] for i in range(1, len(text))] + [list(range(1, len(text)))]:
        got_reasoning, got_content, got_calls = _stream(tokenizer, request_, text, opened, cuts)
        assert got_reasoning.strip() == (reasoning or ""), cuts
        assert got_content.strip() == content, cuts
        assert got_calls == calls, cuts


def test_reasoning_end_from_token_ids(tokenizer) -> None:
    """What the engine asks before it applies a forced tool call's grammar."""
    from m1_runtime.chat import m1 as chat
    from m1_runtime.model.openai_parsers import MiniMaxM1ReasoningParser

    parser = MiniMaxM1ReasoningParser(tokenizer)
    msgs = [chat.Message(role="user", content="hi")]

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    assert not parser.is_reasoning_end(ids(chat.render(msgs, thinking=True)))
    assert parser.is_reasoning_end(ids(chat.render(msgs, thinking=False)))
    assert not parser.is_reasoning_end(ids(chat.render(msgs)))  # the model may still think
    assert parser.is_reasoning_end(ids(chat.render(msgs) + "<think>\nx\n</think>\n"))
    assert parser.is_reasoning_end(ids(chat.render(msgs) + "An answer"))
    # Long reasoning: the turn's start is out of the decoded tail, and it has not ended.
    thinking = chat.render(msgs, thinking=True) + "step by step " * 200
    assert not parser.is_reasoning_end(ids(thinking))
    assert parser.is_reasoning_end(ids(thinking + "</think>\nDone"))
    after = ids("</think>\nrest")
    assert tokenizer.decode(parser.extract_content_ids(ids("<think>\nx") + after)).strip() == (
        "rest"
    )
