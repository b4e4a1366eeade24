"""A finished generation's text, taken apart in the model family's chat format: reasoning,
answer and tool calls."""

from __future__ import annotations

from m1_runtime.chat import formats as chat_formats
from m1_runtime.chat import m1 as chat
from m1_runtime.engine.api import Generation, GenerationRequest, thinking_of


def to_generation(
    chat_format: chat_formats.ChatFormat,
    request: GenerationRequest,
    raw: str,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    finish_reason: str,
    queue_s: float,
    engine_s: float,
    total_s: float,
) -> Generation:
    opened_think = chat_format.prompt_opens_think(thinking_of(request))
    reasoning, answer = chat.split_reasoning(raw, prompt_opened_think=opened_think)
    calls = chat.ParsedToolCalls(content=answer)
    if request.tools:
        calls = chat_format.parse_tool_calls(answer)
    return Generation(
        # A structured answer is the JSON document whole, tags and all.
        text=calls.content if request.json_schema is None else answer,
        reasoning=reasoning,
        raw_text=raw,
        tool_calls=calls.calls,
        tool_call_errors=calls.errors,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        queue_s=queue_s,
        engine_s=engine_s,
        total_s=total_s,
    )
