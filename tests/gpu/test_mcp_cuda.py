"""`m1-mcp serve --transport streamable-http` on CUDA (bf16, torch.compile + CUDA graphs, the
server's defaults there), driven by the MCP SDK's client: every tool answers with
structured content valid under its output schema, and a cancelled call aborts its request."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from tests.e2e import harness
from tests.gpu.results import report

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gpu-http")
    root = harness.make_file_root(tmp / "root")
    env = harness.server_env(M1_MCP_MEMORY_FRACTION="0.2")
    with harness.running_http_server(
        "streamable-http", tmp, ["--file-root", str(root)], env
    ) as srv:
        srv.root = root
        yield srv


async def test_every_tool_on_cuda_and_cancellation(server) -> None:
    async with Client(server.url, read_timeout_seconds=600) as client:
        tools = await harness.call_every_tool(client, server.root)
        # Read once the tools have answered: the model has loaded by then.
        info = json.loads((await client.read_resource("m1://model")).contents[0].text)
        assert info["device"] == "cuda", info
        stats = await harness.cancel_long_chat(client, start_timeout=120)
    report(
        "mcp-cuda",
        tools=sorted(tools),
        model=info,
        cancelled=stats["cancelled"],
        completed=stats["completed"],
        engine_unfinished=stats["engine_unfinished_requests"],
    )
    assert stats["cancelled"] >= 1 and stats["engine_unfinished_requests"] == 0
