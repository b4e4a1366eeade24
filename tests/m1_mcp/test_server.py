"""The MCP surface in memory (no engine started): schemas, prompts, resources, early errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import PromptReference

from m1_mcp.server import build_server, engine_config
from m1_mcp.settings import load_settings
from m1_mcp.tools.common import App
from m1_runtime.engine import Engine

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(tmp_path: Path):
    (tmp_path / "a.py").write_text("x = 1\n")
    settings = load_settings(flags={"file_roots": [str(tmp_path)]}, environ={})
    app = App(settings=settings, engine=Engine(engine_config(settings)))
    return build_server(app)


async def test_tools_have_bounded_input_and_output_schemas(server) -> None:
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    generating = {
        "solve_problem",
        "practice_problems",
        "analyze_document",
        "review_code",
        "suggest_improvements",
        "chat",
    }
    assert set(tools) == generating | {"start_job", "job_result", "cancel_job"}
    for name in generating:
        tool = tools[name]
        assert tool.output_schema and "usage" in tool.output_schema["properties"]
        # Read-only and closed-world: hosts need not ask before every call.
        assert tool.title and tool.annotations is not None
        assert tool.annotations.read_only_hint and tool.annotations.open_world_hint is False
    for name in ("start_job", "job_result", "cancel_job"):
        tool = tools[name]
        assert tool.title and tool.output_schema and "status" in tool.output_schema["properties"]
        assert tool.annotations is not None and tool.annotations.open_world_hint is False
    # Starting or cancelling a job changes state; reading one does not.
    assert tools["job_result"].annotations.read_only_hint
    assert not tools["start_job"].annotations.read_only_hint
    mode = tools["analyze_document"].input_schema["properties"]["mode"]
    assert mode.get("enum") == ["summary", "qa", "insights"] or "$ref" in str(mode)
    chat_messages = tools["chat"].input_schema["properties"]["messages"]
    assert chat_messages["maxItems"] == 64
    finding = tools["review_code"].output_schema["$defs"]["Finding"]["properties"]
    assert set(finding) == {"severity", "category", "line", "message", "suggestion"}


async def test_input_errors_come_before_waiting_for_the_model(server) -> None:
    async with Client(server) as client:
        r = await client.call_tool("review_code", {"path": "/etc/hostname"})
        assert r.is_error and "outside the allowed file roots" in r.content[0].text
        r = await client.call_tool("analyze_document", {})
        assert r.is_error and "either 'text' or 'path'" in r.content[0].text
        r = await client.call_tool("solve_problem", {"problem": "  \n "})
        assert r.is_error and "the problem is empty" in r.content[0].text


async def test_model_card_and_stats_before_loading(server) -> None:
    async with Client(server) as client:
        card = json.loads((await client.read_resource("m1://model")).contents[0].text)
        stats = json.loads((await client.read_resource("m1://stats")).contents[0].text)
        prompt = await client.get_prompt("solve_problem", {"problem": "1+1"})
    assert card["state"] == "stopped" and card["model"] == "smol-m1"
    assert stats["requests"] == 0 and stats["in_flight"] == 0
    assert "\\boxed{}" in prompt.messages[0].content.text


async def test_prompt_arguments_complete(server) -> None:
    async with Client(server) as client:
        assert client.server_capabilities.completions is not None
        review = PromptReference(type="ref/prompt", name="review_code")
        got = (await client.complete(review, {"name": "language", "value": "Py"})).completion
        assert got.values == ["python"] and got.total == 1 and not got.has_more
        got = (await client.complete(review, {"name": "language", "value": ""})).completion
        assert "rust" in got.values and got.total == len(got.values) > 20
        practice = PromptReference(type="ref/prompt", name="practice_problems")
        got = (await client.complete(practice, {"name": "difficulty", "value": "h"})).completion
        assert got.values == ["hard"]
        got = (await client.complete(practice, {"name": "topic", "value": "alg"})).completion
        assert got.values == []  # free text: nothing to offer
        document = PromptReference(type="ref/prompt", name="analyze_document")
        got = (await client.complete(document, {"name": "mode", "value": ""})).completion
        assert got.values == ["summary", "qa", "insights"]
