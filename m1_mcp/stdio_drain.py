"""Answer what was asked before stdin closed.

A stdio client may write its requests and close stdin at once (`printf ... | m1-mcp serve`, a
one-shot agent step) and then read stdout until it ends. The SDK treats stdin's end as the end
of the connection and cancels every request still being handled, so those callers would get no
reply at all. Here the end of stdin is held back from the SDK until each request read before it
has been answered (or cancelled by the client), for at most `DRAIN_LIMIT_S`.

`InFlight` counts the requests: `read` for each stdin message passed to the SDK, `relay` between the
SDK's writer and stdout to see the replies go out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCError, JSONRPCResponse

log = logging.getLogger("m1.mcp")

# The longest a closed stdin keeps the server up for replies. Past it the SDK cancels what is
# left, as it would have at once; a call's own limits (max_tokens, the engine's queue) keep
# real calls well inside it.
DRAIN_LIMIT_S = 600.0


def _key(request_id: Any) -> str:
    # JSON-RPC ids are strings or integers; 1 and "1" are different requests.
    return json.dumps(request_id)


class InFlight:
    """Ids of requests read from stdin and not yet answered."""

    def __init__(self) -> None:
        self._open: set[str] = set()
        self._changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._open)

    def read(self, message: Any) -> None:
        """A stdin message on its way to the SDK, as parsed (and passed) by the guard."""
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return
        if "id" in message:
            self._open.add(_key(message["id"]))
        elif message["method"] == "notifications/cancelled":
            # A cancelled request gets no reply (MCP): stop waiting for it.
            params = message.get("params")
            if isinstance(params, dict) and "requestId" in params:
                self._done(_key(params["requestId"]))

    def answered(self, message: SessionMessage) -> None:
        reply = message.message
        if isinstance(reply, JSONRPCResponse | JSONRPCError) and reply.id is not None:
            self._done(_key(reply.id))

    def _done(self, key: str) -> None:
        if key in self._open:
            self._open.discard(key)
            self._changed.set()
            self._changed = anyio.Event()

    async def drain(self, limit_s: float = DRAIN_LIMIT_S) -> bool:
        """Wait until every request read so far is answered; False if `limit_s` ran out."""
        if self._open:
            log.info("stdin closed with %d request(s) in flight: answering them first", len(self))
        with anyio.move_on_after(limit_s):
            while self._open:
                await self._changed.wait()
            return True
        log.warning("stdin closed; %d request(s) still unanswered after %.0f s", len(self), limit_s)
        return False

    async def relay(self, replies: Any, stdout: Any) -> None:
        """Pass the SDK's outgoing messages on to the stdout writer, noting each reply; close
        the writer when the SDK closes its end, as the SDK would have done itself."""
        async with replies, stdout:
            async for message in replies:
                self.answered(message)
                try:
                    await stdout.send(message)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
