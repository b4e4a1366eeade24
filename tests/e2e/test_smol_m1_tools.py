"""smol-m1, the default model, behind every tool over Streamable HTTP: the fixed set of calls
(`smol_cases.py`) answers with structured content valid under each tool's schema, and nothing is
empty or one phrase repeated. The words are not checked; `docs/smol-m1-tools.md` records them."""

from __future__ import annotations

import json

import pytest
from mcp import Client

from tests.e2e import harness, smol_cases

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("smol-http")
    env = smol_cases.server_env()
    with harness.running_http_server("streamable-http", tmp, [], env) as srv:
        yield srv


async def test_every_case_answers_sensibly(server) -> None:
    async with Client(server.url, read_timeout_seconds=600) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {tool for _, tool, _ in smol_cases.CASES} == set(tools) - harness.JOB_TOOLS
        problems = []
        for label, tool, args in smol_cases.CASES:
            result, _ = await smol_cases.run_case(client, tool, args)
            harness.check_result_against_schema(result, tools[tool].output_schema)
            why = smol_cases.degeneracy(result.structured_content)
            if why:
                problems.append(f"{label}: {why}")
        card = json.loads((await client.read_resource("m1://model")).contents[0].text)
    assert card["chat_format"] == "chatml" and card["softmax_attention_layers"] == 30, card
    assert not problems, problems
