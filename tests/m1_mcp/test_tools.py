"""Every tool's logic against the fake engine: validation before waiting, what is asked of
the model, and how its answer is post-processed. In memory, in milliseconds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from m1_mcp.server import build_server
from m1_mcp.settings import load_settings
from m1_mcp.tools import code_review, reasoning
from m1_mcp.tools.common import App
from m1_mcp.tools.guided_json import schema_budget
from m1_runtime.engine import GenerationRequest
from tests.m1_mcp.fake_engine import FakeEngine

pytestmark = pytest.mark.anyio


def make_app(tmp_path: Path, engine: FakeEngine, **flags: Any) -> App:
    settings = load_settings(flags={"file_roots": [str(tmp_path)], **flags}, environ={})
    return App(settings=settings, engine=engine)  # type: ignore[arg-type]


async def call(app: App, name: str, args: dict[str, Any], on_progress=None) -> Any:
    async with Client(build_server(app)) as client:
        return await client.call_tool(name, args, progress_callback=on_progress)


def user_text(request: GenerationRequest) -> str:
    return "\n".join(m.content for m in request.messages if m.role == "user")


BAD_CALLS = [
    ("solve_problem", {"problem": "  \n "}, "the problem is empty"),
    ("chat", {"messages": [{"role": "system", "content": "x"}]}, "at least one 'user'"),
    (
        "chat",
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a"}, {"name": "a"}]},
        "tool names must be unique",
    ),
    ("review_code", {"code": "x = 1", "path": "a.py"}, "not both"),
    ("review_code", {"code": " \n"}, "the code is empty"),
    ("suggest_improvements", {"path": "/etc/hostname"}, "outside the allowed file roots"),
    ("analyze_document", {}, "either 'text' or 'path'"),
]


@pytest.mark.parametrize(("name", "args", "needle"), BAD_CALLS)
async def test_bad_input_is_refused_without_waiting_for_the_model(
    tmp_path: Path, name: str, args: dict[str, Any], needle: str
) -> None:
    engine = FakeEngine(loaded=False)  # waiting would never end
    with anyio.fail_after(10):
        result = await call(make_app(tmp_path, engine), name, args)
    assert result.is_error and needle in result.content[0].text
    assert engine.waits == 0 and engine.requests == []


async def test_solve_problem_answer_from_box_or_reasoning(tmp_path: Path) -> None:
    engine = FakeEngine("Let me add.\n</think>\nSo 2+2 = \\boxed{4}.")
    app = make_app(tmp_path, engine, max_max_tokens=2000)
    out = await call(app, "solve_problem", {"problem": "2+2?", "max_tokens": 10**6})
    solution = out.structured_content
    assert solution["answer"] == "4" and solution["reasoning"] == "Let me add."
    request = engine.requests[0]
    assert request.thinking is True and request.max_tokens == 2000  # clamped to the limit
    assert "2+2?" in user_text(request) and engine.waits == 1

    # The budget ran out inside the reasoning: the answer is looked for there.
    engine.reply = lambda _r: "the answer is 7. Checking"
    solution = (await call(app, "solve_problem", {"problem": "3+4?"})).structured_content
    assert solution["answer"] == "7. Checking" and solution["solution"] == ""
    assert engine.requests[-1].max_tokens == app.settings.default_max_tokens
    assert solution["usage"]["model_calls"] == 1


async def test_practice_problems_asks_for_exactly_count(tmp_path: Path) -> None:
    problems = [{"problem": f"p{i}", "answer": str(i)} for i in range(3)]
    engine = FakeEngine(json.dumps({"problems": problems}))
    out = await call(make_app(tmp_path, engine), "practice_problems", {"topic": "sums", "count": 3})
    assert out.structured_content["problems"] == problems
    request = engine.requests[0]
    items = request.json_schema["properties"]["problems"]
    assert items["minItems"] == items["maxItems"] == 3
    assert request.max_tokens == schema_budget(reasoning.practice_schema(3))


async def test_chat_passes_tools_and_sampling_and_parses_calls(tmp_path: Path) -> None:
    engine = FakeEngine('<tool_calls>\n{"name": "w", "arguments": {"city": "Paris"}}\nnot json\n')
    args = {
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [{"name": "w", "parameters": {"type": "object", "properties": {}}}],
        "temperature": 0.5,
        "seed": 3,
        "thinking": False,
    }
    reply = (await call(make_app(tmp_path, engine), "chat", args)).structured_content
    assert reply["tool_calls"] == [{"name": "w", "arguments": {"city": "Paris"}}]
    assert len(reply["tool_call_errors"]) == 1 and "not JSON" in reply["tool_call_errors"][0]
    request = engine.requests[0]
    assert request.tools and request.tools[0]["name"] == "w"
    assert request.sampling.temperature == 0.5 and request.sampling.seed == 3
    assert request.thinking is False


async def test_review_code_keeps_lines_inside_the_code(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("a = 1\nb = 2\nc = a / 0\n")
    finding = {
        "severity": "high",
        "category": "bug",
        "line": 3,
        "message": "division by zero",
        "suggestion": "check the divisor",
    }
    engine = FakeEngine(json.dumps({"summary": "One bug on line 3.", "findings": [finding]}))
    out = await call(make_app(tmp_path, engine), "review_code", {"path": "m.py", "language": "py"})
    assert out.structured_content["findings"] == [finding]
    assert out.structured_content["language"] == "py"
    schema = engine.requests[0].json_schema
    line = schema["$defs"]["Finding"]["properties"]["line"]["anyOf"][0]
    assert line["maximum"] == 3
    assert "3 | c = a / 0" in user_text(engine.requests[0])


def refactor_reply(request: GenerationRequest) -> str:
    code = re.search(r"<code>\n(.*)\n</code>", user_text(request), re.DOTALL)
    assert code is not None
    return json.dumps(
        {"refactored_code": code.group(1), "changes": ["renamed"], "benefits": ["clearer"]}
    )


def some_code(chars: int) -> str:
    line = "def f(x):\n    return x * 2  # doubles\n"
    return (line * (chars // len(line) + 1))[:chars]


async def test_suggest_improvements_takes_code_far_over_8k_at_the_default_context(
    tmp_path: Path,
) -> None:
    """Issue 12, defect 7: a two-tokens-a-character budget refused code over ~8K characters."""
    engine = FakeEngine(refactor_reply)  # the default context: 32768 tokens
    code = some_code(30_000)
    out = await call(make_app(tmp_path, engine), "suggest_improvements", {"code": code})
    assert not out.is_error, out.content[0].text
    assert out.structured_content["refactored_code"] == code
    request = engine.requests[0]
    fit = await engine.fit(request)
    assert fit.spare >= 0  # prompt and budget fit the context...
    assert request.max_tokens >= 1.5 * engine.count_tokens(code)  # ...with room for growth


async def test_code_over_the_context_gets_an_honest_limit(tmp_path: Path) -> None:
    """400K characters are accepted as input, but the context sets a smaller limit: the error
    names it, and code just under the stated limit works while code just over is refused."""
    for tool in ("suggest_improvements", "review_code"):
        engine = FakeEngine(
            refactor_reply
            if tool == "suggest_improvements"
            else json.dumps({"summary": "Looks fine to me.", "findings": []})
        )
        app = make_app(tmp_path, engine)
        refused = await call(app, tool, {"code": some_code(400_000)})
        text = refused.content[0].text
        assert refused.is_error and "32768-token context" in text, text
        stated = int(re.search(r"about (\d+) characters", text).group(1))
        assert 10_000 < stated < 400_000
        assert engine.requests == []
        fits = await call(app, tool, {"code": some_code(int(stated * 0.97))})
        assert not fits.is_error, fits.content[0].text
        over = await call(app, tool, {"code": some_code(int(stated * 1.03))})
        assert over.is_error and "max_model_len" in over.content[0].text


def document_reply(request: GenerationRequest) -> str:
    combining = "analyses of consecutive parts" in user_text(request)
    point = "the whole" if combining else "one part"
    return json.dumps(
        {
            "executive_summary": f"Summary of {point}.",
            "key_points": [f"about {point}"],
            "details": [],
            "conclusions": [],
        }
    )


async def test_long_document_is_map_reduced_with_progress_per_chunk(tmp_path: Path) -> None:
    engine = FakeEngine(document_reply, max_model_len=12_288)
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    text = " ".join(f"Paragraph {i}: revenue grew {i % 7} percent." for i in range(1500))
    app = make_app(tmp_path, engine, doc_chunk_tokens=2048, doc_chunk_overlap=64)
    out = (await call(app, "analyze_document", {"text": text}, on_progress)).structured_content
    chunks = out["chunks"]
    assert chunks == -(-out["document_tokens"] // (2048 - 64)) and chunks >= 2
    assert out["usage"]["model_calls"] == chunks + 1
    assert out["summary"]["executive_summary"] == "Summary of the whole."
    items = [
        (f, i)
        for f in ("key_points", "details", "conclusions")
        for i, _ in enumerate(out["summary"][f])
    ]
    assert [(c["field"], c["index"]) for c in out["citations"]] == items
    assert {m.split(" ")[1] for m in seen if m.startswith("chunk ")} == {
        f"{i}/{chunks}" for i in range(1, chunks + 1)
    }
    for request in engine.requests:  # every prompt left its whole answer budget
        assert (await engine.fit(request)).spare >= 0


async def test_document_too_long_to_combine_is_refused(tmp_path: Path) -> None:
    engine = FakeEngine(document_reply, max_model_len=8192)
    app = make_app(tmp_path, engine, doc_chunk_tokens=2048, doc_chunk_overlap=64)
    out = await call(app, "analyze_document", {"text": "word " * 20_000})
    assert out.is_error and "cannot hold two partial answers" in out.content[0].text
    assert engine.requests == []


async def test_short_document_is_one_call(tmp_path: Path) -> None:
    engine = FakeEngine(document_reply)
    out = await call(make_app(tmp_path, engine), "analyze_document", {"text": "A cat sat."})
    assert out.structured_content["chunks"] == 1
    assert out.structured_content["usage"]["model_calls"] == 1


def test_refactoring_budget_follows_tokens_not_characters() -> None:
    payload = code_review.improvement_payload(40_000)
    cap = payload.model_json_schema()["properties"]["refactored_code"]["maxLength"]
    assert cap == 40_000 + 20_000 + code_review.GROWTH_CHARS
