"""HTTP hardening without a model: bearer token, DNS-rebinding protection, a load failure.

The server is pointed at a checkpoint directory that does not exist, so the engine fails at
once and no model is loaded; the HTTP layer and the tool error path are what is under test.
"""

from __future__ import annotations

import signal

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e import harness

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("auth")
    with harness.running_http_server(
        "streamable-http",
        tmp,
        ["--model", str(tmp / "no-such-checkpoint")],
        harness.server_env(M1_MCP_AUTH_TOKEN=TOKEN),
    ) as srv:
        yield srv


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_requests_without_the_token_are_refused(server) -> None:
    r = httpx2.post(server.url, json=harness.initialize_request("t"), headers=HEADERS)
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    r = httpx2.post(
        server.url,
        json=harness.initialize_request("t"),
        headers=HEADERS | {"Authorization": "Bearer x"},
    )
    assert r.status_code == 401


def test_the_scheme_has_no_case(server) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = httpx2.post(
            server.url,
            json=harness.initialize_request("t"),
            headers=HEADERS | {"Authorization": f"{scheme} {TOKEN}"},
        )
        assert r.status_code == 200, scheme
    r = httpx2.post(
        server.url,
        json=harness.initialize_request("t"),
        headers=HEADERS | {"Authorization": f"Basic {TOKEN}"},
    )
    assert r.status_code == 401


def test_dns_rebinding_protection_is_kept(server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = httpx2.post(
        server.url,
        json=harness.initialize_request("t"),
        headers=HEADERS | auth | {"Host": "evil.example:80"},
    )
    assert bad.status_code in (400, 403, 421)
    good = httpx2.post(server.url, json=harness.initialize_request("t"), headers=HEADERS | auth)
    assert good.status_code == 200


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Host": "127.0.0.1:18081.evil.com"}, False),  # a prefix of an allowed host is not one
        ({"Host": "127.0.0.1"}, True),  # no port
        ({"Host": "LOCALHOST:8000"}, True),  # host names have no case
        ({"Origin": "http://127.0.0.1:1.evil.com"}, False),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "http://localhost:3000"}, True),
    ],
)
def test_host_and_origin_are_parsed_not_prefix_matched(server, headers, allowed) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx2.post(
        server.url, json=harness.initialize_request("t"), headers=HEADERS | auth | headers
    )
    assert (r.status_code == 200) is allowed, (r.status_code, r.text[:200])
    if not allowed:
        assert r.status_code == 421 and "allowed_hosts" in r.text


async def test_with_token_tools_list_and_load_failure_is_a_clear_tool_error(server) -> None:
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    async with client, Client(streamable_http_client(server.url, http_client=client)) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert "solve_problem" in names
        r = await c.call_tool("solve_problem", {"problem": "1+1", "max_tokens": 16})
        assert r.is_error and "failed to load" in r.content[0].text


def test_zz_stops_on_sigterm(server) -> None:
    code, alive = server.stop(signal.SIGTERM)
    assert code == 0 and alive == []
