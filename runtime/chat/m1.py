"""MiniMax-M1's chat format: render messages and tools, parse what the model writes.

This is the one place the format lives. It renders the same text as the chat template in the
tiny tokenizer (scripts/build_tiny_tokenizer.py) for the messages it accepts; a test checks that.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

BOD = "<begin_of_document>"
BOS = "<beginning_of_sentence>"
EOS = "<end_of_sentence>"
GENERATION_PROMPT = f"{BOS}ai name=assistant\n"

TOOLS_PREAMBLE = "You are provided with these tools:\n<tools>\n"
TOOLS_INSTRUCTIONS = (
    "</tools>\n\nIf you need to call tools, please respond with <tool_calls></tool_calls> XML "
    "tags, and provide tool-name and json-object of arguments, following the format below:\n"
    '<tool_calls>\n{"name": <tool-name-1>, "arguments": <args-json-object-1>}\n...\n</tool_calls>'
)


class ToolCall(BaseModel):
    name: str = Field(description="Name of the tool to call")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Arguments as JSON")


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    name: str | None = Field(None, description="For role 'tool': which tool produced the result")
    tool_calls: list[ToolCall] | None = Field(None, description="For role 'assistant'")


def _dumps(value: Any) -> str:
    # Same spacing as the Jinja `tojson` filter used by the tokenizer's chat template.
    return json.dumps(value, ensure_ascii=False)


def render(
    messages: list[Message],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    thinking: bool | None = None,
) -> str:
    """Render a conversation as M1 prompt text (special tokens written as text).

    `thinking=True` opens a `<think>` block for the model; `False` writes an empty one so the
    answer starts at once; `None` leaves the choice to the model.
    """
    return joined(render_segments(messages, tools, add_generation_prompt, thinking))


# A prompt as pieces: (text, True) is the template's own markup, whose special-token strings
# are control tokens; (text, False) is what users, documents and tools wrote, which must be
# tokenized as plain text, so that "<end_of_sentence>" in a message cannot end a turn.
# Whitespace at a seam goes with the conversation's text: byte-level BPE merges runs of
# whitespace and a space with the word after it, so this cut keeps the joined text's tokens.
Segment = tuple[str, bool]


def joined(segments: list[Segment]) -> str:
    """The prompt text of segments, markup and conversation alike."""
    return "".join(text for text, _ in segments)


def render_segments(
    messages: list[Message],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    thinking: bool | None = None,
) -> list[Segment]:
    """`render`, with the template's markup and the conversation's text kept apart."""
    parts: list[Segment] = [(BOD, True)]
    system = "".join(m.content for m in messages if m.role == "system")
    if system:
        parts += [
            (f"{BOS}system ai_setting=assistant", True),
            ("\n" + system, False),
            (f"{EOS}\n", True),
        ]
    if tools:
        listed = "".join(_dumps(t) + "\n" for t in tools)
        parts += [
            (f"{BOS}system tool_setting=tools\n{TOOLS_PREAMBLE.rstrip()}", True),
            ("\n" + listed, False),
            (f"{TOOLS_INSTRUCTIONS}{EOS}\n", True),
        ]
    for m in messages:
        if m.role == "user":
            parts += [(f"{BOS}user name=user", True), ("\n" + m.content, False), (f"{EOS}\n", True)]
        elif m.role == "assistant":
            text = m.content
            if m.tool_calls:
                if text and not text.endswith("\n"):
                    text += "\n"
                calls = "".join(
                    '{"name": ' + _dumps(c.name) + ', "arguments": ' + _dumps(c.arguments) + "}\n"
                    for c in m.tool_calls
                )
                text += f"<tool_calls>\n{calls}</tool_calls>"
            parts += [(GENERATION_PROMPT.rstrip(), True), ("\n" + text, False), (f"{EOS}\n", True)]
        elif m.role == "tool":
            parts += [
                (f"{BOS}tool name=tools\ntool name:", True),
                (" " + (m.name or ""), False),
                ("\ntool result:", True),
                (" " + m.content + "\n\n", False),
                (f"{EOS}\n", True),
            ]
    if add_generation_prompt:
        parts.append((GENERATION_PROMPT, True))
        if thinking is True:
            parts.append(("<think>\n", True))
        elif thinking is False:
            parts.append(("<think>\n\n</think>\n\n", True))
    return [(text, trusted) for text, trusted in parts if text]


_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def split_reasoning(text: str, prompt_opened_think: bool = False) -> tuple[str, str]:
    """Split generated text into (reasoning, answer).

    `prompt_opened_think` says the prompt already ended with `<think>`, so the text starts inside
    the reasoning. A reasoning block that never closes (budget ran out) is all reasoning.
    """
    if prompt_opened_think:
        text = _THINK_OPEN + text
    stripped = text.lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return "", text.strip()
    body = stripped[len(_THINK_OPEN) :]
    end = body.find(_THINK_CLOSE)
    if end < 0:
        return body.strip(), ""
    return body[:end].strip(), body[end + len(_THINK_CLOSE) :].strip()


@dataclass
class ParsedToolCalls:
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one sentence per malformed line
    content: str = ""  # the answer with the <tool_calls> blocks taken out


_TOOL_BLOCK = re.compile(r"<tool_calls>(.*?)(?:</tool_calls>|$)", re.DOTALL)


def parse_tool_calls(answer: str) -> ParsedToolCalls:
    """Parse `<tool_calls>` blocks (one JSON object a line) out of an answer.

    Pass the answer only (after `split_reasoning`): calls inside `<think>` are not calls.
    A malformed line is reported in `errors`, never dropped silently.
    """
    result = ParsedToolCalls()
    for block in _TOOL_BLOCK.finditer(answer):
        lines = [raw.strip() for raw in block.group(1).splitlines() if raw.strip()]
        for number, line in enumerate(lines, start=1):
            call = parse_call_line(line, number)
            if isinstance(call, ToolCall):
                result.calls.append(call)
            else:
                result.errors.append(call)
    result.content = _TOOL_BLOCK.sub("", answer).strip()
    return result


def parse_call_line(line: str, number: int) -> ToolCall | str:
    """One line of a `<tool_calls>` block: the call, or a sentence saying what is wrong."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"tool call line {number} is not JSON ({exc.msg}): {line[:200]}"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return f"tool call line {number} has no string 'name': {line[:200]}"
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    if not isinstance(args, dict):
        return f"tool call line {number} has 'arguments' that is not an object: {line[:200]}"
    return ToolCall(name=obj["name"], arguments=args)


# ---------------------------------------------------------------------------------------------
# Streaming: what can be shown of a partial generation. Each function maps the text so far to
# what is safe to emit; applied to a growing text, every part only ever grows, so a caller
# emits the difference between two calls. A tag split across tokens is held back until it is
# whole ("</thi" shows nothing until the next token says whether it is "</think>").


def _held_back(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


@dataclass
class ReasoningSoFar:
    reasoning: str
    content: str
    ended: bool  # the reasoning block is closed, or the answer started without one


def reasoning_so_far(text: str, prompt_opened_think: bool = False) -> ReasoningSoFar:
    """The streaming counterpart of `split_reasoning` (same split once the text is complete,
    except that the parts keep their inner whitespace)."""
    if prompt_opened_think:
        text = _THINK_OPEN + text
    stripped = text.lstrip()
    if not stripped or _THINK_OPEN.startswith(stripped):
        return ReasoningSoFar("", "", False)  # nothing yet, or a "<think>" still arriving
    if not stripped.startswith(_THINK_OPEN):
        return ReasoningSoFar("", stripped, True)
    body = stripped[len(_THINK_OPEN) :]
    end = body.find(_THINK_CLOSE)
    if end < 0:
        shown = body[: len(body) - _held_back(body, _THINK_CLOSE)]
        return ReasoningSoFar(shown.lstrip("\n"), "", False)
    answer = body[end + len(_THINK_CLOSE) :]
    return ReasoningSoFar(body[:end].lstrip("\n"), answer.lstrip("\n"), True)


_CALLS_OPEN = "<tool_calls>"
_CALLS_CLOSE = "</tool_calls>"


@dataclass
class ToolCallsSoFar:
    content: str  # text outside the blocks, and malformed call lines verbatim
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def tool_calls_so_far(answer: str, final: bool = False) -> ToolCallsSoFar:
    """The streaming counterpart of `parse_tool_calls`: a call counts once its line is complete
    (a newline or `</tool_calls>` after it); a malformed line stays visible in the content.
    `final`: the answer is complete, so nothing is held back and a last line counts as is."""
    out = ToolCallsSoFar(content="")
    rest = answer
    while True:
        start = rest.find(_CALLS_OPEN)
        if start < 0:
            out.content += rest if final else rest[: len(rest) - _held_back(rest, _CALLS_OPEN)]
            return out
        out.content += rest[:start]
        block = rest[start + len(_CALLS_OPEN) :]
        end = block.find(_CALLS_CLOSE)
        lines = (block if end < 0 else block[:end]).split("\n")
        if end < 0 and not final:
            lines = lines[:-1]  # the last line may still be arriving
        lines = [line.strip() for line in lines if line.strip()]
        for number, line in enumerate(lines, start=1):
            call = parse_call_line(line, number)
            if isinstance(call, ToolCall):
                out.calls.append(call)
            else:
                out.errors.append(call)
                out.content += line + "\n"
        if end < 0:
            return out
        rest = block[end + len(_CALLS_CLOSE) :]
