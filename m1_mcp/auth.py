"""Optional bearer-token check for the HTTP transports (SSE and Streamable HTTP)."""

from __future__ import annotations

import hmac
import json
from typing import Any

Scope = dict[str, Any]


class BearerTokenMiddleware:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`.

    Sits outside the SDK's app, so the SDK's own DNS-rebinding checks still run after it.
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = b""
            for key, value in scope.get("headers", []):
                if key.lower() == b"authorization":
                    given = value
                    break
            # The scheme has no case (RFC 9110 11.1); the token is compared with compare_digest,
            # so the time taken does not reveal how much of it matched.
            scheme, _, credentials = given.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(
                credentials.strip(), self.expected
            ):
                body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="m1-mcp"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)
