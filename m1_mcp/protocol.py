"""Protocol behaviour the SDK leaves to the application: error codes for unknown names, the
`logging/setLevel` request of the 2025 revisions, and cache hints for the static lists.

Everything here sits on the SDK's public seams (middleware, `cache_hints`) except one call
(`add_request_handler` on the low-level server), which is the seam the SDK itself names for
re-providing `logging/setLevel` (see `mcp.server.extension.MethodBinding`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, LoggingLevel, SetLevelRequestParams

log = logging.getLogger("m1.protocol")

# Tools, prompts, resources and resource templates are registered once at start-up and never
# change while the server runs, so a client may keep these lists for a day; "public" because
# they are the same for every caller (a bearer token changes who may call, not what is listed).
# resources/read is left out: m1://stats changes every second. The hints ride the 2026-07-28
# wire only (ttlMs/cacheScope do not exist in the 2025 revisions).
STATIC_LIST_TTL_MS = 24 * 60 * 60 * 1000
CACHE_HINTS: dict[Any, CacheHint] = {
    method: CacheHint(ttl_ms=STATIC_LIST_TTL_MS, scope="public")
    for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
}


class UnknownNames:
    """Server middleware: `tools/call` or `prompts/get` naming nothing we serve is a JSON-RPC
    -32602 error (invalid params), as the spec asks.

    Without it the SDK answers an unknown tool with an `isError` result (which reads as if the
    tool ran and failed) and an unknown prompt with code 0. Only a well-formed string name is
    checked here; any other shape is left to the SDK's params validation, which already answers
    -32602.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.request_id is not None and ctx.method in ("tools/call", "prompts/get"):
            name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
            if isinstance(name, str):
                await self._check(ctx.method, name)
        return await call_next(ctx)

    async def _check(self, method: str, name: str) -> None:
        if method == "tools/call":
            kind, known = "tool", [t.name for t in await self.server.list_tools()]
        else:
            kind, known = "prompt", [p.name for p in await self.server.list_prompts()]
        if name not in known:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Unknown {kind}: {name!r} (this server has {', '.join(sorted(known))})",
                data={kind: name},
            )


class ClientLogLevels:
    """`logging/setLevel` for clients of the 2025 revisions.

    The request is answered (an empty result) and the level recorded per connection, so clients
    that set a level before anything else (some do, right after `initialize`) are not refused
    with -32601, and the `logging` capability is advertised. The server sends no
    `notifications/message` of its own: its logs go to stderr (on stdio the client that started
    it reads them there), tool progress travels as progress notifications, and the 2026-07-28
    revision removes this request and server-wide logging altogether (SEP-2577): on that wire
    the SDK refuses the method with -32601 before it reaches us.
    """

    def __init__(self) -> None:
        # Keyed by the session id on Streamable HTTP and SSE; None on stdio (one client).
        self.levels: dict[str | None, LoggingLevel] = {}

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        key = _session_key(ctx)
        if key not in self.levels and len(self.levels) >= 4096:
            self.levels.pop(next(iter(self.levels)))  # bounded: sessions come and go
        self.levels[key] = params.level
        log.info("client log level set to %s", params.level)
        return EmptyResult()


def _session_key(ctx: ServerRequestContext[Any, Any]) -> str | None:
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is not None and headers.get("mcp-session-id"):
        return headers["mcp-session-id"]
    query = getattr(request, "query_params", None)  # SSE: the session travels in the URL
    return query.get("session_id") if query is not None else None


def install(server: MCPServer) -> ClientLogLevels:
    """Add the middleware and the `logging/setLevel` handler to a built server."""
    server.middleware.append(UnknownNames(server))
    levels = ClientLogLevels()
    # MCPServer has no parameter for this deprecated method; the SDK points at the low-level
    # server's add_request_handler for it (which, unlike its constructor, warns nothing).
    server._lowlevel_server.add_request_handler(
        "logging/setLevel", SetLevelRequestParams, levels.set_level
    )
    return levels
