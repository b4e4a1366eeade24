"""The real server over SSE: list and call every tool, a bad input, then SIGINT."""

from __future__ import annotations

import signal

import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.e2e import harness

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sse")
    root = harness.make_file_root(tmp / "root")
    with harness.running_http_server(
        "sse", tmp, ["--file-root", str(root)], harness.server_env()
    ) as srv:
        srv.root = root
        yield srv


async def test_list_and_call_every_tool(server) -> None:
    assert server.url.endswith("/sse")
    async with Client(sse_client(server.url, sse_read_timeout=300), read_timeout_seconds=300) as c:
        await harness.call_every_tool(c, server.root)
        # A second connection shares the same engine (the lifespan runs per SSE connection).
        async with Client(sse_client(server.url), read_timeout_seconds=300) as other:
            r = await other.call_tool("solve_problem", {"problem": "2+2", "max_tokens": 16})
            assert not r.is_error


async def test_bad_inputs_then_serving(server) -> None:
    async with Client(sse_client(server.url), read_timeout_seconds=300) as c:
        for name, args, needle in harness.BAD_CALLS[:6]:
            r = await c.call_tool(name, args)
            assert r.is_error and needle in r.content[0].text, (needle, r.content)
        r = await c.call_tool("solve_problem", {"problem": "2+2", "max_tokens": 16})
        assert not r.is_error


def test_zz_sigint_stops_cleanly_and_leaves_no_engine_process(server) -> None:
    assert harness.descendants(server.proc.pid)
    code, alive = server.stop(signal.SIGINT)
    assert code == 0, server.log_text()[-2000:]
    assert alive == []
