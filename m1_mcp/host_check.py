"""Strict Host and Origin checks for the HTTP transports (DNS-rebinding protection).

The SDK's own check matches "127.0.0.1:*" by prefix, so it lets "127.0.0.1:8000.evil.com"
through, refuses a Host without a port and compares case-sensitively. This middleware sits in
front of it and parses instead: a host name (or a bracketed IPv6 address), then optionally ":"
and a port of digits. A request passes when that name is allowed, in any letter case, with any
port or none. An entry of ``allowed_hosts`` with a port ("example.com:8443") allows only that
port. Host and Origin are then handed on lower-cased, which the SDK's check accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

Scope = dict[str, Any]

DEFAULT_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_NAME = re.compile(rf"^(\[[0-9a-f:.]+\]|{_LABEL}(\.{_LABEL})*)$")


def split_host(value: str) -> tuple[str, str | None] | None:
    """(name, port or None) of a Host value, lower-cased; None if it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = (value[: end + 1], value[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, after = value.partition(":")
        rest = colon + after
    port: str | None = None
    if rest:
        port = rest[1:]
        if not rest.startswith(":") or not port.isdigit() or not 0 < int(port) < 65536:
            return None
    if not _NAME.match(name):
        return None
    return name, port


class HostRules:
    """Allowed (name, port) pairs; a port of None allows any port, or none."""

    def __init__(self, extra: list[str]) -> None:
        self.rules: list[tuple[str, str | None]] = [(h, None) for h in DEFAULT_HOSTS]
        for entry in extra:
            parsed = split_host(entry.removesuffix(":*"))
            if parsed is None:
                raise ValueError(f"allowed host {entry!r} is not a host name with an optional port")
            self.rules.append(parsed)

    def allows(self, host: str) -> bool:
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        return any(name == n and (p is None or p == port) for n, p in self.rules)

    def sdk_patterns(self) -> list[str]:
        """What the SDK's own check must accept after this one: each name, with and without
        a port."""
        names = dict.fromkeys(n for n, _ in self.rules)
        return [*names, *(f"{n}:*" for n in names)]


class HostCheckMiddleware:
    """ASGI middleware: refuse (421) a request whose Host, or Origin if sent, is not allowed."""

    def __init__(self, app: Any, rules: HostRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        host = next((v.decode("latin-1") for k, v in headers if k.lower() == b"host"), "")
        origin = next((v.decode("latin-1") for k, v in headers if k.lower() == b"origin"), None)
        problem = None
        if not self.rules.allows(host):
            problem = f"Host {host!r} is not allowed (see the allowed_hosts setting)"
        elif origin is not None and not self._origin_ok(origin):
            problem = f"Origin {origin!r} is not allowed (see the allowed_hosts setting)"
        if problem:
            await send(
                {
                    "type": "http.response.start",
                    "status": 421,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send(
                {"type": "http.response.body", "body": json.dumps({"error": problem}).encode()}
            )
            return
        lowered = [
            (k, v.lower()) if k.lower() in (b"host", b"origin") else (k, v) for k, v in headers
        ]
        await self.app(dict(scope, headers=lowered), receive, send)

    def _origin_ok(self, origin: str) -> bool:
        parts = urlsplit(origin.strip())
        return (
            parts.scheme in ("http", "https")
            and not parts.path.strip("/")
            and (self.rules.allows(parts.netloc))
        )
