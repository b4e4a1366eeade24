"""chat: a conversation in, M1's answer out, with function calling in M1's <tool_calls> format."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field, field_validator

from m1_mcp.tools.common import App, InputError
from m1_mcp.tools.runner import FreeText, Usage, declare, run
from m1_runtime.chat.m1 import Message, ToolCall
from m1_runtime.engine import Generation, Sampling

_NAME = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field("", max_length=200_000)
    name: Annotated[str | None, Field(max_length=64)] = Field(
        None, description="For role 'tool': the tool whose result this is"
    )
    tool_calls: list[ToolCall] | None = Field(
        None, max_length=16, description="For role 'assistant': calls it made"
    )


class ToolDefinition(BaseModel):
    """A function the model may call, in M1's format (name, description, JSON-schema parameters)."""

    name: str = Field(pattern=_NAME)
    description: str = Field("", max_length=2_000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments: an object schema",
    )

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('parameters must be a JSON schema with "type": "object"')
        props = value.get("properties", {})
        if not isinstance(props, dict) or not all(isinstance(v, dict) for v in props.values()):
            raise ValueError("parameters.properties must map names to JSON schemas")
        if len(str(value)) > 20_000:
            raise ValueError("parameters schema is too large (over 20,000 characters)")
        return value


class ChatReply(BaseModel):
    text: str = Field(description="The answer, with reasoning and tool-call blocks taken out")
    reasoning: str = Field(description="The model's <think> reasoning, if any")
    tool_calls: list[ToolCall] = Field(
        description="Calls parsed from the answer (in the model's tool-call syntax: m1://model)"
    )
    tool_call_errors: list[str] = Field(description="Malformed tool calls, explained")
    usage: Usage


def reply_of(gen: Generation, usage: Usage) -> ChatReply:
    return ChatReply(
        text=gen.text,
        reasoning=gen.reasoning,
        tool_calls=gen.tool_calls,
        tool_call_errors=gen.tool_call_errors,
        usage=usage,
    )


def register(server: MCPServer, app: App) -> None:
    @declare(server, "chat", "Chat with tools")
    async def chat(
        messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=64)],
        tools: Annotated[list[ToolDefinition] | None, Field(max_length=32)] = None,
        max_tokens: Annotated[int | None, Field(ge=1, le=1_000_000)] = None,
        # None: the model's recommended sampling (m1://model shows it).
        temperature: Annotated[float | None, Field(ge=0.0, le=2.0, allow_inf_nan=False)] = None,
        top_p: Annotated[float | None, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = None,
        # vLLM seeds a 64-bit generator: a larger value would fail inside the engine.
        seed: Annotated[int | None, Field(ge=0, le=2**63 - 1)] = None,
        thinking: bool | None = None,
        ctx: Context | None = None,
    ) -> ChatReply:
        """Chat with MiniMax-M1. Pass messages (system/user/assistant/tool) and, for function
        calling, tool definitions {name, description, parameters}. Returns the answer text, the
        reasoning and any tool calls the model made. A seed makes sampling repeatable on a
        GPU engine; a CPU engine refuses a seed unless temperature is 0."""
        if not any(m.role == "user" for m in messages):
            raise InputError("messages must contain at least one 'user' message")
        if tools and len({t.name for t in tools}) != len(tools):
            raise InputError("tool names must be unique")
        job = FreeText(
            [Message(**m.model_dump()) for m in messages],
            finish=reply_of,
            max_tokens=max_tokens,
            tools=[t.model_dump() for t in tools] if tools else None,
            sampling=Sampling(temperature=temperature, top_p=top_p, seed=seed),
            thinking=thinking,
        )
        return await run(app, ctx, job)
