"""JSON-RPC envelope checks in front of the SDK's transports.

The SDK decodes every inbound message against a union of request, notification and response
models. Two defects follow, and both sit below any handler:

- A request whose `id` is null, a fraction, a boolean, an object or an array fails the request
  model and then *passes* the notification model (pydantic ignores the extra `id`), so it is
  run as a notification and never answered. MCP says an id MUST be a string or an integer.
- A message that is no JSON-RPC object at all (a batch array, a scalar, no `jsonrpc: "2.0"`,
  a non-string method) is answered -32602 (invalid params) over HTTP, and not at all on stdio,
  where JSON-RPC asks for -32600 (invalid request) with a null id; on stdio a line that is not
  JSON is dropped too, where JSON-RPC asks for -32700 (parse error).

`problem()` names those cases; everything else is passed on untouched, so the SDK stays the one
place that decodes messages. `HttpGuard` applies it to POSTed bodies (Streamable HTTP and the
SSE transport's message endpoint), `guarded_stdio_server` to stdin lines.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

import anyio
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, JSONRPCError

from m1_mcp.stdio_drain import InFlight

log = logging.getLogger("m1.jsonrpc")

# The SDK refuses POST bodies over 4 MiB with 413; the guard reads no more than that before
# handing the request on, so it never holds more than the SDK would.
MAX_CHECKED_BODY = 4 * 1024 * 1024


def _valid_id(value: Any) -> bool:
    # bool is an int subclass in Python; JSON's true/false are not ids.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def error_reply(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def problem(message: Any) -> dict[str, Any] | None:
    """The JSON-RPC error reply owed to a decoded message the SDK would mishandle, else None."""
    if isinstance(message, list):
        return error_reply(
            INVALID_REQUEST, "Invalid Request: batches are not supported (MCP removed them)"
        )
    if not isinstance(message, dict):
        return error_reply(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    has_id = "id" in message
    echo = message["id"] if has_id and _valid_id(message["id"]) else None
    if message.get("jsonrpc") != "2.0":
        return error_reply(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', echo)
    if "method" in message:
        if not isinstance(message["method"], str):
            return error_reply(INVALID_REQUEST, 'Invalid Request: "method" must be a string', echo)
        if has_id and not _valid_id(message["id"]):
            return error_reply(
                INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer'
            )
        params = message.get("params")
        if has_id and params is not None and not isinstance(params, dict):
            return error_reply(INVALID_PARAMS, 'Invalid params: "params" must be an object', echo)
        return None
    if "result" in message or "error" in message:
        return None  # a response to one of our requests: the SDK correlates (or drops) it
    return error_reply(
        INVALID_REQUEST, 'Invalid Request: no "method" (nor "result" or "error")', echo
    )


def parse_text(text: str | bytes) -> tuple[Any, dict[str, Any] | None]:
    """The message and `problem()`'s reply for it; text that is not JSON gets the -32700 reply
    (and no message)."""
    try:
        message = json.loads(text)
    except ValueError:
        return None, error_reply(PARSE_ERROR, "Parse error: the message is not valid JSON")
    return message, problem(message)


class HttpGuard:
    """ASGI middleware: a POSTed JSON body the SDK would mishandle gets its JSON-RPC error here,
    with status 400; anything else reaches the SDK byte for byte.

    Only bodies that parse as JSON are judged (the SDK already answers unparseable ones -32700),
    and only JSON bodies (the SDK answers other content types 415).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        first: dict[str, Any] | None = None  # a disconnect seen while reading
        while more and size <= MAX_CHECKED_BODY:
            event = await receive()
            if event["type"] != "http.request":
                first = event
                break
            chunks.append(event.get("body", b""))
            size += len(chunks[-1])
            more = event.get("more_body", False)
        body = b"".join(chunks)
        if first is None and not more:
            reply = _judge(body)
            if reply is not None:
                log.info("refused a malformed JSON-RPC message: %s", reply["error"]["message"])
                await _send_json(send, 400, reply)
                return

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            if first is not None:
                return first
            return await receive()

        await self.app(scope, replay, send)


def _judge(body: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(body)
    except ValueError:
        return None  # the SDK's own -32700 answer is right
    return problem(message)


def _is_json(scope: dict[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardedLines:
    """Stdin lines for the SDK's stdio transport, less the ones `parse_text` refuses: those are
    answered through `replies` (sent on by `forward`) and never reach the SDK, which would drop
    them unanswered. Blank lines are skipped, as the SDK would (after failing to parse them)."""

    def __init__(self, lines: Any, in_flight: InFlight) -> None:
        self.lines = lines
        self.in_flight = in_flight
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](64)

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self.lines:
            if not line.strip():
                continue
            message, reply = parse_text(line)
            if reply is None:
                self.in_flight.read(message)
                yield line
                continue
            log.info("refused a malformed JSON-RPC message: %s", reply["error"]["message"])
            await self._send.send(reply)
        # End of stdin: the SDK learns of it only once what was asked has been answered.
        await self.in_flight.drain()

    async def forward(self, write_stream: Any) -> None:
        """Write the refusals to stdout through the SDK's own writer (one writer per pipe)."""
        async with self._receive:
            async for reply in self._receive:
                try:
                    await write_stream.send(SessionMessage(JSONRPCError.model_validate(reply)))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return


def _take_stdin() -> tuple[BinaryIO, Callable[[], None] | None]:
    """Stdin's wire, with fd 0 pointed at /dev/null while we serve (as the SDK's stdio_server
    does when it opens stdin itself), so engine processes cannot read the client's bytes."""
    stream = sys.stdin
    try:
        if stream.buffer.fileno() != 0:
            return stream.buffer, None
        wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except (AttributeError, OSError, ValueError):
        return stream.buffer, None
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)

    def restore() -> None:
        os.dup2(wire, 0)

    # closefd=False: the reader thread may still block on it after we return.
    return os.fdopen(wire, "rb", closefd=False), restore


@asynccontextmanager
async def guarded_stdio_server() -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's `stdio_server`, reading stdin through `GuardedLines`, with replies relayed
    through `InFlight` so that the end of stdin waits for them (`m1_mcp/stdio_drain.py`)."""
    wire, restore = _take_stdin()
    try:
        text = anyio.wrap_file(io.TextIOWrapper(wire, encoding="utf-8", errors="replace"))
        in_flight = InFlight()
        lines = GuardedLines(text, in_flight)
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
            replies_in, replies_out = anyio.create_memory_object_stream[SessionMessage](0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight.relay, replies_out, write_stream)
                async with anyio.create_task_group() as refusals:
                    refusals.start_soon(lines.forward, write_stream)
                    try:
                        yield read_stream, replies_in
                    finally:
                        refusals.cancel_scope.cancel()
                        # The SDK closes its end when it stops; closing it again is a no-op.
                        # The relay then passes on what it holds and ends by itself, so the
                        # last replies are written, not cancelled.
                        replies_in.close()
    finally:
        if restore is not None:
            restore()
