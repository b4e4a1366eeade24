"""Chat formats per model family: how a conversation becomes prompt segments, and how the text
a model writes becomes reasoning, an answer and tool calls.

* ``minimax-m1``: M1's own format (``runtime/chat.py``), which equals the template that M1
  checkpoints (and tiny-m1) carry; tools and ``<think>`` are part of it.
* any other template (``chatml`` for smol-m1): rendered by the checkpoint's own Jinja chat
  template. When the template takes no ``tools``, they go into the system message as a
  ``<tools>`` list with an instruction to answer ``<tool_call>{json}</tool_call>`` (the usual
  ChatML convention), and those blocks are parsed back. Thinking is offered only when the
  template has an ``enable_thinking`` switch.

Rendering through a template keeps one guarantee of M1's renderer: special-token strings are
control tokens only in the template's own markup. Every string of the conversation is swapped
for a placeholder before rendering and put back afterwards as an untrusted segment, so that
"<|im_end|>" written in a message cannot end a turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from m1_runtime.chat import m1 as chat
from m1_runtime.chat.m1 import Message, ParsedToolCalls, Segment, ToolCall

M1_MARKER = chat.BOS  # a template that writes this token is M1's

_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)

# The tool list for templates that take none. The call syntax is the one SmolLM2 was trained
# on: a JSON list of {"name", "arguments"} objects inside one <tool_call> block.
TOOLS_SYSTEM = (
    "You can call these functions (JSON schemas):\n<tools>\n{tools}</tools>\n\n"
    "When a function answers the question, reply with only the calls, as a JSON list inside "
    "<tool_call></tool_call> tags:\n"
    '<tool_call>[{{"name": "<function name>", "arguments": {{"<parameter>": "<value>"}}}}]'
    "</tool_call>\nWhen none fits, answer in plain text."
)


@dataclass(frozen=True)
class ChatFormat:
    """The M1 format; subclasses render through a checkpoint's template."""

    name: str = "minimax-m1"
    thinking: bool = True  # a <think> block can be opened or skipped from the prompt
    tool_syntax: str = "<tool_calls> with one JSON object a line"

    def render_segments(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        thinking: bool | None,
    ) -> list[Segment]:
        return chat.render_segments(messages, tools, thinking=thinking)

    def prompt_opens_think(self, thinking: bool | None) -> bool:
        """The prompt ends inside a <think> block, so the text starts as reasoning."""
        return thinking is True

    def parse_tool_calls(self, answer: str) -> ParsedToolCalls:
        return chat.parse_tool_calls(answer)

    def describe(self) -> dict[str, Any]:
        return {"chat_format": self.name, "thinking": self.thinking, "tool_calls": self.tool_syntax}


@dataclass(frozen=True)
class TemplateFormat(ChatFormat):
    """A checkpoint's own Jinja template, driven through its tokenizer."""

    tokenizer: Any = None
    native_tools: bool = False  # the template renders `tools` itself

    def render_segments(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        thinking: bool | None,
    ) -> list[Segment]:
        originals: list[str] = []

        def hide(value: Any) -> Any:
            if isinstance(value, str):
                originals.append(value)
                return f"\ue000{len(originals) - 1}\ue001"
            if isinstance(value, dict):
                return {hide(k): hide(v) for k, v in value.items()}
            if isinstance(value, list):
                return [hide(v) for v in value]
            return value

        conversation = [self._message(m, hide) for m in messages]
        kwargs: dict[str, Any] = {}
        if tools and self.native_tools:
            kwargs["tools"] = hide(tools)
        elif tools:
            conversation = self._with_tools_system(conversation, tools, hide)
        if self.thinking and thinking is not None:
            kwargs["enable_thinking"] = thinking
        text = self.tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True, **kwargs
        )
        return _split_placeholders(text, originals)

    def prompt_opens_think(self, thinking: bool | None) -> bool:
        return False  # templates with a thinking switch leave writing <think> to the model

    def parse_tool_calls(self, answer: str) -> ParsedToolCalls:
        result = ParsedToolCalls()
        number = 0
        for block in _CALL_BLOCK.finditer(answer):
            body = " ".join(block.group(1).split())
            for line in _call_objects(body):
                number += 1
                call = chat.parse_call_line(line, number)
                (result.calls if isinstance(call, ToolCall) else result.errors).append(call)
        result.content = _CALL_BLOCK.sub("", answer).strip()
        return result

    def _message(self, m: Message, hide) -> dict[str, Any]:
        out: dict[str, Any] = {"role": m.role, "content": hide(m.content)}
        if m.role == "tool" and m.name:
            out["name"] = hide(m.name)
        if m.tool_calls:
            if self.native_tools:
                out["tool_calls"] = [
                    {
                        "type": "function",
                        "function": {"name": hide(c.name), "arguments": hide(c.arguments)},
                    }
                    for c in m.tool_calls
                ]
            else:
                listed = json.dumps(
                    [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls],
                    ensure_ascii=False,
                )
                calls = f"<tool_call>{listed}</tool_call>"
                joined = (m.content + "\n" if m.content else "") + calls
                out["content"] = hide(joined)
        return out

    @staticmethod
    def _with_tools_system(
        conversation: list[dict[str, Any]], tools: list[dict[str, Any]], hide
    ) -> list[dict[str, Any]]:
        listed = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tools)
        block = TOOLS_SYSTEM.format(tools=listed)
        system = [c for c in conversation if c["role"] == "system"]
        rest = [c for c in conversation if c["role"] != "system"]
        if system:
            # The system text is already hidden; add the tools as one more hidden string.
            first = dict(system[0])
            first["content"] = first["content"] + hide("\n\n" + block)
            return [first, *system[1:], *rest]
        return [{"role": "system", "content": hide(block)}, *rest]


def _call_objects(body: str) -> list[str]:
    """A <tool_call> block holds one JSON object, or (as SmolLM2 was taught) a JSON list of
    them; each comes back as one line for `chat.parse_call_line`."""
    if not body:
        return []
    if body.startswith("["):
        try:
            items = json.loads(body)
        except json.JSONDecodeError:
            return [body]
        return [json.dumps(item, ensure_ascii=False) for item in items]
    return [body]


def _split_placeholders(text: str, originals: list[str]) -> list[Segment]:
    """Rendered text with placeholders -> segments: the template's markup trusted, every
    original string untrusted. A placeholder inside quotes was written by `tojson`, so its
    string goes back JSON-escaped, as `tojson` would have written it. Whitespace at a seam
    moves to the untrusted side (see `chat.Segment`)."""
    parts: list[Segment] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append((text[pos : m.start()], True))
        original = originals[int(m.group(1))]
        quoted = text[m.start() - 1 : m.start()] == '"' and text[m.end() : m.end() + 1] == '"'
        parts.append(
            (json.dumps(original, ensure_ascii=False)[1:-1] if quoted else original, False)
        )
        pos = m.end()
    parts.append((text[pos:], True))
    parts = _merge(parts)
    for i in range(len(parts) - 1):
        (a, a_trusted), (b, b_trusted) = parts[i], parts[i + 1]
        if a_trusted and not b_trusted:
            kept = a.rstrip()
            parts[i], parts[i + 1] = (kept, True), (a[len(kept) :] + b, False)
    return _merge(parts)


def _merge(parts: list[Segment]) -> list[Segment]:
    """Drop empty pieces and join neighbours of the same kind."""
    merged: list[Segment] = []
    for piece, trusted in parts:
        if not piece:
            continue
        if merged and merged[-1][1] == trusted:
            merged[-1] = (merged[-1][0] + piece, trusted)
        else:
            merged.append((piece, trusted))
    return merged


def for_tokenizer(tokenizer: Any) -> ChatFormat:
    """The format of a checkpoint, read off its tokenizer's chat template."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one renders chats
        template = template.get("default")
    if not template or M1_MARKER in template:
        if not template and M1_MARKER not in tokenizer.get_vocab():
            raise ValueError(
                "the checkpoint's tokenizer has no chat template, and it is not "
                "M1's tokenizer; add a chat_template to tokenizer_config.json"
            )
        return ChatFormat()
    native = "tools" in template
    return TemplateFormat(
        name="chatml" if "<|im_start|>" in template else "template",
        thinking="enable_thinking" in template,
        tool_syntax=(
            "the template's own"
            if native
            else "<tool_call>{json}</tool_call> blocks (tools listed in the system message)"
        ),
        tokenizer=tokenizer,
        native_tools=native,
    )
