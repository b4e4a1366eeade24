"""The conformance suite's fixture server: m1-mcp's own server factory and HTTP stack, plus the
tools, resources and prompts the suite's scenarios call by name (`test_simple_text`,
`test://static-text`, `test_prompt_with_arguments`, ...), so the whole suite runs against our
transport, middleware and error handling rather than against a separate toy server.

Test-only: never installed, never part of `m1-mcp serve`. The engine is built but never started
(nothing here generates text), so the server is up in about a second.

    python -m tests.conformance.fixture_server --port 0    # prints "m1-mcp: listening on URL"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import warnings
from collections import deque
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import (
    AudioContent,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

from m1_mcp.server import build_server, engine_config, run_http
from m1_mcp.settings import Settings
from m1_mcp.tools.common import App
from m1_runtime.engine import Engine

# The suite exercises features the 2026-07-28 revision deprecates (logging, sampling,
# elicitation from a tool); the SDK warns on each use.
warnings.simplefilter("ignore", MCPDeprecationWarning)

PNG_1PX = (  # a 1x1 red pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIA"
    "X8jx0gAAAABJRU5ErkJggg=="
)
WAV_EMPTY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# SEP-1613: a 2020-12 schema with $schema, $defs and additionalProperties, which the suite checks
# come back from tools/list untouched.
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}

# SEP-1034: a default for every primitive type.
DEFAULTS_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

# SEP-1330: the five enum shapes.
ENUMS_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


class MemoryEventStore(EventStore):
    """Events of the last few streams, so a client can resume one the server closed (SEP-1699)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.events: deque[tuple[str, str, Any]] = deque(maxlen=keep)
        self.counter = 0

    async def store_event(self, stream_id: str, message: Any) -> str:
        self.counter += 1
        self.events.append((stream_id, str(self.counter), message))
        return str(self.counter)

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> Any:
        stream = next((s for s, e, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        for s, e, message in list(self.events):
            if s == stream and int(e) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, e))
        return stream


def add_tools(server: MCPServer) -> None:
    def tool(name: str, description: str):
        return server.tool(name=name, description=description, structured_output=False)

    @tool("test_simple_text", "Tests simple text content response")
    def simple_text() -> str:
        return "This is a simple text response for testing."

    @tool("test_image_content", "Tests image content response")
    def image() -> list[ImageContent]:
        return [ImageContent(type="image", data=PNG_1PX, mime_type="image/png")]

    @tool("test_audio_content", "Tests audio content response")
    def audio() -> list[AudioContent]:
        return [AudioContent(type="audio", data=WAV_EMPTY, mime_type="audio/wav")]

    def embedded(uri: str, mime: str, text: str) -> EmbeddedResource:
        return EmbeddedResource(
            type="resource", resource=TextResourceContents(uri=uri, mime_type=mime, text=text)
        )

    @tool("test_embedded_resource", "Tests embedded resource content response")
    def embedded_resource() -> list[EmbeddedResource]:
        text = "This is an embedded resource content."
        return [embedded("test://embedded-resource", "text/plain", text)]

    @tool("test_multiple_content_types", "Tests text, image and resource content together")
    def mixed() -> list[TextContent | ImageContent | EmbeddedResource]:
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG_1PX, mime_type="image/png"),
            embedded(
                "test://mixed-content-resource",
                "application/json",
                json.dumps({"test": "data", "value": 123}),
            ),
        ]

    @tool("test_tool_with_logging", "Tests a tool that sends log messages while it runs")
    async def with_logging(ctx: Context) -> str:
        for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.info(text)
            await asyncio.sleep(0.05)
        return "Tool with logging executed successfully"

    @tool("test_tool_with_progress", "Tests a tool that reports progress")
    async def with_progress(ctx: Context) -> str:
        for step in (0, 50, 100):
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
            await asyncio.sleep(0.05)
        meta = ctx.request_context.meta or {}
        return str(meta.get("progress_token", meta.get("progressToken", 0)))

    @tool("test_error_handling", "Tests error response handling")
    def error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @tool("test_reconnection", "Closes its SSE stream mid-call; the client resumes it (SEP-1699)")
    async def reconnection(ctx: Context) -> str:
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)  # the client reconnects with Last-Event-ID meanwhile
        return "Reconnection test completed successfully."

    @tool("test_sampling", "Tests server-initiated sampling")
    async def sampling(prompt: str, ctx: Context) -> str:
        question = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
        # related_request_id: on this request's own stream. Without it the SDK sends on the
        # standalone GET stream, which a client may not have opened yet: the request is lost.
        result = await ctx.session.create_message(
            messages=[question], max_tokens=100, related_request_id=ctx.request_id
        )
        text = result.content.text if result.content.type == "text" else "No response"
        return f"LLM response: {text}"

    async def elicit(ctx: Context, message: str, form: dict[str, Any]) -> str:
        result = await ctx.session.elicit_form(message, form, related_request_id=ctx.request_id)
        return f"action={result.action}, content={json.dumps(result.content or {})}"

    @tool("test_elicitation", "Tests server-initiated elicitation")
    async def elicitation(message: str, ctx: Context) -> str:
        form = {
            "type": "object",
            "properties": {"response": {"type": "string", "description": "User's response"}},
            "required": ["response"],
        }
        return "User response: " + await elicit(ctx, message, form)

    @tool("test_elicitation_sep1034_defaults", "Tests elicitation with defaults (SEP-1034)")
    async def elicitation_defaults(ctx: Context) -> str:
        message = "Please review and update the form fields with defaults"
        return "Elicitation completed: " + await elicit(ctx, message, DEFAULTS_FORM)

    @tool("test_elicitation_sep1330_enums", "Tests elicitation with enum schemas (SEP-1330)")
    async def elicitation_enums(ctx: Context) -> str:
        message = "Please select options from the enum fields"
        return "Elicitation completed: " + await elicit(ctx, message, ENUMS_FORM)

    @tool("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features (SEP-1613)")
    def schema_2020_12(name: str | None = None, address: dict[str, Any] | None = None) -> str:
        return f"JSON Schema 2020-12 tool called with: {json.dumps({'name': name})}"

    # The SDK derives the listed schema from the signature; the suite wants this exact one
    # listed (as the suite's own reference server does, by overriding its tools/list).
    server._tool_manager.get_tool("json_schema_2020_12_tool").parameters = SCHEMA_2020_12


def add_resources(server: MCPServer) -> None:
    @server.resource("test://static-text", name="static-text", mime_type="text/plain")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        return base64.b64decode(PNG_1PX)

    @server.resource("test://template/{id}/data", name="template", mime_type="application/json")
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @server.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
    def watched() -> str:
        return "Watched resource content"

    subscribed: set[str] = set()

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        subscribed.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        subscribed.discard(str(params.uri))
        return EmptyResult()

    # No MCPServer parameter for these 2025-revision methods; the low-level server takes them.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def add_prompts(server: MCPServer) -> None:
    @server.prompt(name="test_simple_prompt", description="A simple prompt without arguments")
    def simple() -> str:
        return "This is a simple prompt for testing."

    @server.prompt(name="test_prompt_with_arguments", description="A prompt with arguments")
    def with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt(
        name="test_prompt_with_embedded_resource", description="A prompt with an embedded resource"
    )
    def with_resource(resourceUri: str) -> list[Any]:
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            EmbeddedResource(type="resource", resource=resource),
            "Please process the embedded resource above.",
        ]

    @server.prompt(name="test_prompt_with_image", description="A prompt with image content")
    def with_image() -> list[Any]:
        return [
            ImageContent(type="image", data=PNG_1PX, mime_type="image/png"),
            "Please analyze the image above.",
        ]


def fixture_server(settings: Settings) -> MCPServer:
    app = App(settings=settings, engine=Engine(engine_config(settings)))  # never started
    server = build_server(app)
    add_tools(server)
    add_resources(server)
    add_prompts(server)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    settings = Settings(
        model="tiny-m1", transport="streamable-http", host="127.0.0.1", port=args.port
    )
    server = fixture_server(settings)

    async def serve() -> None:  # until killed: there is nothing to shut down
        await run_http(server, settings, anyio.Event(), MemoryEventStore())

    anyio.run(serve)


if __name__ == "__main__":
    main()
