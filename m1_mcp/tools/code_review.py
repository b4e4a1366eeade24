"""review_code and suggest_improvements: guided JSON over the submitted code."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from m1_mcp import prompts
from m1_mcp.tools.common import (
    READ_ONLY,
    App,
    Reporter,
    Usage,
    generate_json,
    guided_schema,
    take_text,
    user_errors,
    wait_ready,
)

Severity = Literal["critical", "high", "medium", "low", "info"]
Category = Literal["bug", "security", "performance", "style", "best_practice"]


class Finding(BaseModel):
    severity: Severity
    category: Category
    line: int | None = Field(description="1-based line number, null when not known", ge=1)
    message: str = Field(max_length=160, description="What is wrong")
    suggestion: str = Field(max_length=160, description="How to fix it")


class _ReviewPayload(BaseModel):
    summary: str = Field(min_length=12, max_length=300)
    findings: list[Finding] = Field(max_length=5)


class Review(BaseModel):
    language: str | None
    summary: str
    findings: list[Finding]
    usage: Usage


class Improvements(BaseModel):
    language: str | None
    refactored_code: str
    changes: list[str]
    benefits: list[str]
    usage: Usage


Code = Annotated[str | None, Field(max_length=400_000, description="The code, inline")]
PathArg = Annotated[
    str | None, Field(max_length=4096, description="A file under the configured roots")
]
Language = Annotated[
    str | None, Field(max_length=40, description="e.g. 'python'; inferred if unset")
]


def _review_schema(n_lines: int) -> dict:
    schema = guided_schema(_ReviewPayload)
    line = schema["$defs"]["Finding"]["properties"]["line"]
    # Keep line numbers inside the code: the grammar cannot point past the last line.
    for option in line["anyOf"]:
        if option.get("type") == "integer":
            option["maximum"] = max(n_lines, 1)
    return schema


def register(server: MCPServer, app: App) -> None:
    @server.tool(
        name="review_code",
        title="Review code",
        annotations=READ_ONLY,
        description="Review code (inline 'code' or a file 'path' under the configured roots). "
        "Returns a summary and findings, each with severity, category (bug, security, "
        "performance, style, best_practice), line if known, message and suggestion.",
    )
    @user_errors
    async def review_code(
        code: Code = None,
        path: PathArg = None,
        language: Language = None,
        focus: Annotated[str | None, Field(max_length=500)] = None,
        ctx: Context | None = None,
    ) -> Review:
        source = take_text(app, code, path, "code")
        report = Reporter(ctx)
        await wait_ready(app, report)
        n_lines = len(source.splitlines())
        payload, gen = await generate_json(
            app,
            prompts.review_messages(source, language, focus),
            _ReviewPayload,
            report,
            schema=_review_schema(n_lines),
        )
        return Review(
            language=language,
            summary=payload.summary,
            findings=payload.findings,
            usage=Usage.of([gen]),
        )

    @server.tool(
        name="suggest_improvements",
        title="Suggest code improvements",
        annotations=READ_ONLY,
        description="Suggest a refactoring of code (inline 'code' or a file 'path' under the "
        "configured roots). Returns the refactored code, the list of changes and their benefits.",
    )
    @user_errors
    async def suggest_improvements(
        code: Code = None,
        path: PathArg = None,
        language: Language = None,
        ctx: Context | None = None,
    ) -> Improvements:
        source = take_text(app, code, path, "code")
        report = Reporter(ctx)
        await wait_ready(app, report)
        # The refactoring may grow the code a little; the cap keeps the guided output bounded.
        limit = min(len(source) + len(source) // 2 + 200, 24_000)

        class _Payload(BaseModel):
            refactored_code: str = Field(max_length=limit)
            changes: list[Annotated[str, Field(max_length=200)]] = Field(min_length=1, max_length=6)
            benefits: list[Annotated[str, Field(max_length=200)]] = Field(max_length=5)

        payload, gen = await generate_json(
            app, prompts.improve_messages(source, language), _Payload, report
        )
        return Improvements(
            language=language,
            refactored_code=payload.refactored_code,
            changes=payload.changes,
            benefits=payload.benefits,
            usage=Usage.of([gen]),
        )
