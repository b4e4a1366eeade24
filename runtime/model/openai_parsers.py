"""M1's tool-call and reasoning parsers for vLLM's OpenAI server (`vllm serve`).

The same format code as the MCP tools (:mod:`m1_runtime.chat.m1`) behind vLLM's parser interfaces:

* ``minimax_m1`` (and the old ``minimax``) tool parser: ``<tool_calls>`` blocks, one JSON
  object a line, into OpenAI ``tool_calls``; a malformed line stays in the content, visible;
* ``minimax_m1`` reasoning parser: a leading ``<think>…</think>`` into ``reasoning_content``;
  with ``chat_template_kwargs={"enable_thinking": true}`` the prompt opens the block.

Streaming re-reads the whole text so far on every delta and emits what became safe to show
since the previous delta, so a tag or a JSON line split across tokens at any point comes out
whole. vLLM's server runs the reasoning parser first and hands the tool parser only the text
after the reasoning. Required and named ``tool_choice`` keep vLLM's own handling (a JSON schema
through structured outputs, parsed by the server), so those calls are always valid JSON.

``<think>`` and ``<tool_calls>`` are plain text in M1's vocabulary, not special tokens, so
everything here works on text; the token-id methods decode.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from vllm.reasoning import ReasoningParser
from vllm.tool_parsers import ToolParser

from m1_runtime.chat import m1 as chat
from m1_runtime.model.vllm_compat import openai_protocol

log = logging.getLogger("m1.parsers")
_P = openai_protocol()
# The engine core asks whether reasoning has ended from token ids alone; a bounded tail of the
# text is enough to see the tags.
_TAIL_TOKENS = 64


def _thinking_opened(chat_template_kwargs: dict[str, Any] | None) -> bool:
    """Whether the chat template opened `<think>` itself (it does for enable_thinking=true)."""
    return bool((chat_template_kwargs or {}).get("enable_thinking"))


class MiniMaxM1ReasoningParser(ReasoningParser):
    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        self._opened = _thinking_opened(kwargs.get("chat_template_kwargs"))
        self._ended: bool | None = None  # known once a streamed delta said so
        self._shown = chat.ReasoningSoFar("", "", False)  # what the stream has emitted

    def adjust_request(self, request: Any) -> Any:
        request = super().adjust_request(request)
        choice = getattr(request, "tool_choice", None)
        forced = choice == "required" or not (choice is None or isinstance(choice, str))
        if forced and not self._opened and hasattr(request, "include_reasoning"):
            # A forced call's grammar must hold from the first token. Unless the prompt opened
            # <think>, this turn has no reasoning, and saying so lets vLLM apply the JSON
            # schema at once instead of after a reasoning block that never comes.
            request.include_reasoning = False
        return request

    def _decode(self, ids: Sequence[int]) -> str:
        return self.model_tokenizer.decode(list(ids))

    def is_reasoning_end(self, input_ids: Sequence[int]) -> bool:
        # Called on the prompt (has this turn's reasoning already been closed?) and, in the
        # engine, on the tokens so far, of which only a tail is decoded.
        tail = self._decode(list(input_ids)[-_TAIL_TOKENS:])
        cut = tail.rfind(chat.GENERATION_PROMPT)
        if cut >= 0:  # the turn's start is in view: it says whether a <think> block opened
            turn = tail[cut + len(chat.GENERATION_PROMPT) :]
            return chat.reasoning_so_far(turn).ended if turn.strip() else False
        # Deep inside the turn: only a closing tag after the last opening one ends reasoning.
        return tail.rfind("</think>") > tail.rfind("<think>")

    def is_reasoning_end_streaming(
        self, input_ids: Sequence[int], delta_ids: Iterable[int]
    ) -> bool:
        if self._ended is not None:  # this instance parsed the stream: it knows
            return self._ended
        return self.is_reasoning_end(input_ids)

    def extract_content_ids(self, input_ids: list[int]) -> list[int]:
        close = "</think>"
        if close not in self._decode(input_ids):
            return [] if not self._ended else list(input_ids)
        for i in range(len(input_ids)):
            if close in self._decode(input_ids[: i + 1]):
                return list(input_ids[i + 1 :])
        return []

    def extract_reasoning(self, model_output: str, request: Any) -> tuple[str | None, str | None]:
        opened = self._opened or _thinking_opened(getattr(request, "chat_template_kwargs", None))
        reasoning, content = chat.split_reasoning(model_output, prompt_opened_think=opened)
        return reasoning or None, content or None

    def extract_reasoning_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
    ) -> Any:
        now = chat.reasoning_so_far(current_text, self._opened)
        reasoning = now.reasoning[len(self._shown.reasoning) :]
        content = now.content[len(self._shown.content) :]
        self._shown, self._ended = now, now.ended
        if not reasoning and not content:
            return None
        return _P.DeltaMessage(reasoning=reasoning or None, content=content or None)


class MiniMaxM1ToolParser(ToolParser):
    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        self._content_sent = 0
        self._errors_logged = 0

    def extract_tool_calls(self, model_output: str, request: Any) -> Any:
        parsed = chat.tool_calls_so_far(model_output, final=True)
        for error in parsed.errors:
            log.warning("minimax_m1 tool parser: %s", error)
        if not parsed.calls:
            return _P.ExtractedToolCallInformation(
                tools_called=False, tool_calls=[], content=model_output
            )
        calls = [
            _P.ToolCall(
                type="function",
                function=_P.FunctionCall(name=c.name, arguments=_dumps(c.arguments)),
            )
            for c in parsed.calls
        ]
        # Malformed lines are in the content, where the client sees them.
        return _P.ExtractedToolCallInformation(
            tools_called=True, tool_calls=calls, content=parsed.content.strip() or None
        )

    def extract_tool_calls_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
        request: Any,
    ) -> Any:
        now = chat.tool_calls_so_far(current_text)
        for error in now.errors[self._errors_logged :]:
            log.warning("minimax_m1 tool parser: %s", error)
        self._errors_logged = len(now.errors)
        content = now.content[self._content_sent :]
        self._content_sent = len(now.content)
        deltas = []
        for index in range(len(self.prev_tool_call_arr), len(now.calls)):
            call = now.calls[index]
            arguments = _dumps(call.arguments)
            # vLLM's server completes a call's arguments at the end from these two lists:
            # what the call is, and how much of it was streamed (all of it, here).
            self.prev_tool_call_arr.append({"name": call.name, "arguments": arguments})
            self.streamed_args_for_tool.append(arguments)
            deltas.append(
                _P.DeltaToolCall(
                    index=index,
                    type="function",
                    id=_P.make_tool_call_id(),
                    function=_P.DeltaFunctionCall(name=call.name, arguments=arguments),
                )
            )
        self.current_tool_id = len(self.prev_tool_call_arr) - 1
        if not content and not deltas:
            return None
        return _P.DeltaMessage(content=content or None, tool_calls=deltas)


def _dumps(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False)
