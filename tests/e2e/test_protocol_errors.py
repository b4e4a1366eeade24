"""JSON-RPC and MCP error codes of the real server, over Streamable HTTP (raw httpx POSTs, and
the SDK's client) and over stdio (raw lines): malformed messages, invalid ids, unknown tools and
prompts, bad prompt arguments, `logging/setLevel`, unknown tool arguments, cache hints."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.e2e import harness

pytestmark = [pytest.mark.slow]

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, PARSE_ERROR = -32600, -32601, -32602, -32700

# Raw messages the SDK alone would mishandle, and the reply each must get.
MALFORMED: list[tuple[str, int, Any]] = [
    ('{"jsonrpc": "2.0", "id": null, "method": "ping"}', INVALID_REQUEST, None),
    ('{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', INVALID_REQUEST, None),
    ('{"jsonrpc": "2.0", "id": [1], "method": "ping"}', INVALID_REQUEST, None),
    ('{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', INVALID_REQUEST, None),
    ('{"jsonrpc": "2.0", "id": true, "method": "ping"}', INVALID_REQUEST, None),
    ('[{"jsonrpc": "2.0", "id": 40, "method": "ping"}]', INVALID_REQUEST, None),
    ('"ping"', INVALID_REQUEST, None),
    ('{"id": 41, "method": "ping"}', INVALID_REQUEST, 41),
    ('{"jsonrpc": "1.0", "id": 42, "method": "ping"}', INVALID_REQUEST, 42),
    ('{"jsonrpc": "2.0", "id": 43, "method": 7}', INVALID_REQUEST, 43),
    ('{"jsonrpc": "2.0", "id": 44}', INVALID_REQUEST, 44),
    ('{"jsonrpc": "2.0", "id": 45, "method": "tools/list", "params": [1]}', INVALID_PARAMS, 45),
]


def mcp_errors() -> list[tuple[str, dict[str, Any], int, str]]:
    """(method, params, code, text in the message) for well-formed requests that must fail."""
    return [
        ("tools/call", {"name": "no_such_tool", "arguments": {}}, INVALID_PARAMS, "no_such_tool"),
        ("prompts/get", {"name": "no_such_prompt"}, INVALID_PARAMS, "no_such_prompt"),
        ("prompts/get", {"name": "solve_problem"}, INVALID_PARAMS, "'problem'"),
        (
            "prompts/get",
            {"name": "practice_problems", "arguments": {"topic": "x", "count": "many"}},
            INVALID_PARAMS,
            "'count'",
        ),
        (
            "prompts/get",
            {"name": "solve_problem", "arguments": {"problem": "1+1", "show_step": "no"}},
            INVALID_PARAMS,
            "'show_step'",
        ),
        ("logging/setLevel", {"level": "loud"}, INVALID_PARAMS, ""),
        ("no/such/method", {}, METHOD_NOT_FOUND, ""),
    ]


# ------------------------------------------------------------------ Streamable HTTP


class RawHttp:
    """One MCP session spoken with raw POSTs (2025-11-25, the handshake era)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30)
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        init = harness.initialize_request("raw-http")
        init["params"]["protocolVersion"] = "2025-11-25"
        status, self.initialized = self.post(json.dumps(init))
        assert status == 200, self.initialized
        self.headers["MCP-Protocol-Version"] = "2025-11-25"
        self.post('{"jsonrpc": "2.0", "method": "notifications/initialized"}')

    def post(self, body: str) -> tuple[int, Any]:
        r = self.http.post(self.url, content=body.encode(), headers=self.headers)
        if "mcp-session-id" in r.headers:
            self.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            events = [ln[5:].strip() for ln in r.text.splitlines() if ln.startswith("data:")]
            replies = [json.loads(e) for e in events if e]
            return r.status_code, replies[-1] if replies else None
        return r.status_code, r.json() if r.content else None

    def request(self, method: str, params: dict[str, Any], rid: int = 99) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        return self.post(json.dumps(body))[1]


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.HttpServer]:
    tmp = tmp_path_factory.mktemp("http")
    root = harness.make_file_root(tmp / "root")
    env = harness.server_env(M1_MCP_FILE_ROOTS=str(root))
    with harness.running_http_server("streamable-http", tmp, [], env) as srv:
        yield srv  # the engine loads meanwhile; nothing here waits for it


@pytest.mark.parametrize(("body", "code", "rid"), MALFORMED)
def test_http_malformed_message_gets_its_json_rpc_error(http_server, body, code, rid) -> None:
    session = RawHttp(http_server.url)
    status, reply = session.post(body)
    assert status == 400, reply
    assert reply["jsonrpc"] == "2.0" and reply["id"] == rid, reply
    assert reply["error"]["code"] == code, reply
    # The session is unharmed.
    assert session.request("ping", {}) == {"jsonrpc": "2.0", "id": 99, "result": {}}


def test_http_not_json_is_a_parse_error(http_server) -> None:
    status, reply = RawHttp(http_server.url).post("{not json")
    assert status == 400 and reply["error"]["code"] == PARSE_ERROR, reply


def test_http_error_codes_and_logging(http_server) -> None:
    session = RawHttp(http_server.url)
    assert "logging" in session.initialized["result"]["capabilities"]
    for method, params, code, needle in mcp_errors():
        reply = session.request(method, params)
        assert reply["error"]["code"] == code, (method, params, reply)
        assert needle in reply["error"]["message"], (method, params, reply)
    assert session.request("logging/setLevel", {"level": "warning"}) == {
        "jsonrpc": "2.0",
        "id": 99,
        "result": {},
    }
    # A known prompt still renders.
    reply = session.request("prompts/get", {"name": "solve_problem", "arguments": {"problem": "2"}})
    assert "Problem:\n2" in reply["result"]["messages"][0]["content"]["text"], reply


def test_http_unknown_tool_arguments_are_ignored(http_server) -> None:
    """Our documented choice: unknown fields in tool arguments are ignored (the SDK's argument
    models ignore extras); only the known fields are validated."""
    name, args, needle = harness.BAD_CALLS[0]
    reply = RawHttp(http_server.url).request(
        "tools/call", {"name": name, "arguments": {**args, "no_such_field": 1}}
    )
    result = reply["result"]
    assert result["isError"] and needle in result["content"][0]["text"], result
    assert "no_such_field" not in result["content"][0]["text"]


@pytest.mark.anyio
async def test_http_static_lists_carry_long_cache_hints(http_server) -> None:
    async with Client(http_server.url) as client:  # the SDK's client: the 2026-07-28 wire
        for listed in (
            await client.list_tools(),
            await client.list_prompts(),
            await client.list_resources(),
        ):
            assert (listed.ttl_ms, listed.cache_scope) == (86_400_000, "public"), listed
        stats = await client.read_resource("m1://stats")  # live: never cached
        assert stats.ttl_ms == 0


# ------------------------------------------------------------------ stdio


def test_stdio_malformed_lines_and_error_codes(tmp_path) -> None:
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [harness.M1_MCP, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=harness.server_env(),
        )
        try:
            _stdio_session(proc)
        finally:
            proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by pid
                proc.wait()


def _stdio_session(proc: subprocess.Popen) -> None:
    def send(line: str) -> None:
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()

    def receive() -> dict[str, Any]:
        line = proc.stdout.readline()
        assert line, "server closed stdout"
        return json.loads(line)

    send(json.dumps(harness.initialize_request("raw-stdio")))
    assert "logging" in receive()["result"]["capabilities"]
    send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
    for body, code, rid in [*MALFORMED, ("{not json", PARSE_ERROR, None)]:
        send(body)
        reply = receive()
        assert reply["id"] == rid and reply["error"]["code"] == code, (body, reply)
    for method, params, code, needle in mcp_errors():
        send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        reply = receive()
        assert reply["error"]["code"] == code and needle in reply["error"]["message"], reply
    send('{"jsonrpc": "2.0", "id": 8, "method": "logging/setLevel", "params": {"level": "info"}}')
    assert receive() == {"jsonrpc": "2.0", "id": 8, "result": {}}


# ------------------------------------------------------------------ SSE


def test_sse_malformed_message_gets_its_json_rpc_error(tmp_path) -> None:
    """The SSE transport's message endpoint goes through the same guard: the POST that carries
    a malformed message is answered 400 with the JSON-RPC error (the SDK alone said "Could not
    parse message" in plain text and dropped it)."""
    with harness.running_http_server("sse", tmp_path, [], harness.server_env()) as srv:
        with httpx.Client(timeout=30) as http:
            with http.stream("GET", srv.url, headers={"Accept": "text/event-stream"}) as events:
                lines = events.iter_lines()
                endpoint = next(ln[5:].strip() for ln in lines if ln.startswith("data:"))
                url = str(httpx.URL(srv.url).join(endpoint))
                for body, code, rid in MALFORMED:
                    r = http.post(url, content=body, headers={"Content-Type": "application/json"})
                    assert r.status_code == 400, (body, r.text)
                    assert (r.json()["id"], r.json()["error"]["code"]) == (rid, code), body
                ok = http.post(url, json=harness.initialize_request("raw-sse"))
                assert ok.status_code == 202, ok.text
