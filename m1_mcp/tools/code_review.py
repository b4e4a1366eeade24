"""review_code and suggest_improvements: guided JSON over the submitted code.

Code is accepted up to the server's character limit, but it must also fit the model's context
next to the instructions and the answer; when it does not, the refusal names the limit this
context sets, in tokens and about how many characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from m1_mcp import prompts
from m1_mcp.tools.common import App, InputError, take_text
from m1_mcp.tools.guided_json import (
    STRING_QUOTES,
    TOKENS_PER_STRING_CHAR,
    guided_schema,
    json_request,
    schema_budget,
)
from m1_mcp.tools.runner import Call, GuidedJson, Subject, Usage, declare, run, too_long

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


Code = Annotated[
    str | None,
    Field(
        max_length=400_000,
        description="The code, inline; it must also fit the model's context (m1://model)",
    ),
]
PathArg = Annotated[
    str | None, Field(max_length=4096, description="A file under the configured roots")
]
Language = Annotated[
    str | None, Field(max_length=40, description="e.g. 'python'; inferred if unset")
]

# A refactoring may grow the code a little. Its grammar cap is in characters; its budget is in
# the tokenizer's tokens of the submitted code, which a faithful refactoring resembles.
GROWTH = 1.5
GROWTH_CHARS = 200  # room for a few added lines on tiny inputs
GROWTH_TOKENS = 64  # the same in tokens


def review_schema(n_lines: int) -> dict[str, Any]:
    schema = guided_schema(_ReviewPayload)
    line = schema["$defs"]["Finding"]["properties"]["line"]
    # Keep line numbers inside the code: the grammar cannot point past the last line.
    for option in line["anyOf"]:
        if option.get("type") == "integer":
            option["maximum"] = max(n_lines, 1)
    return schema


def improvement_payload(code_chars: int) -> type[BaseModel]:
    """The guided answer for code of `code_chars` characters."""
    cap = code_chars + int(code_chars * (GROWTH - 1)) + GROWTH_CHARS

    class _Payload(BaseModel):
        refactored_code: str = Field(max_length=cap)
        changes: list[Annotated[str, Field(max_length=200)]] = Field(min_length=1, max_length=6)
        benefits: list[Annotated[str, Field(max_length=200)]] = Field(max_length=5)

    return _Payload


@dataclass
class Refactoring:
    """suggest_improvements' job: its answer holds the whole code again, so its budget follows
    the code's tokens rather than the character cap's worst case (two tokens a character),
    which would refuse any code over a few thousand characters at the default context."""

    source: str
    language: str | None

    async def run(self, call: Call) -> Improvements:
        payload_model = improvement_payload(len(self.source))
        schema = guided_schema(payload_model)
        closing_bound = schema_budget(schema)  # the document closes within this, whatever it is
        code_cap = schema["properties"]["refactored_code"]["maxLength"]
        rest = closing_bound - (STRING_QUOTES + TOKENS_PER_STRING_CHAR * code_cap)
        code_tokens = await anyio.to_thread.run_sync(call.engine.count_tokens, self.source)
        need = rest + math.ceil(code_tokens * GROWTH) + GROWTH_TOKENS
        messages = prompts.improve_messages(self.source, self.language)
        fit = await call.fit(json_request(messages, schema, need))
        if fit.spare < 0:
            frame = prompts.improve_messages("", self.language)
            empty = await call.fit(json_request(frame, schema, rest + GROWTH_TOKENS))
            # The code appears twice, in the prompt and (grown) in the answer.
            room = math.floor(empty.spare / (1 + GROWTH))
            taken = fit.prompt_tokens - empty.prompt_tokens
            raise InputError(too_long(Subject("code", self.source, frame), taken, room, fit))
        # The closing bound when the context holds it; else all the room left, at least `need`.
        budget = min(closing_bound, need + fit.spare)
        payload = await call.generate_json(messages, payload_model, schema, budget)
        return Improvements(
            language=self.language,
            refactored_code=payload.refactored_code,  # type: ignore[attr-defined]
            changes=payload.changes,  # type: ignore[attr-defined]
            benefits=payload.benefits,  # type: ignore[attr-defined]
            usage=call.usage(),
        )


def register(server: MCPServer, app: App) -> None:
    @declare(server, "review_code", "Review code")
    async def review_code(
        code: Code = None,
        path: PathArg = None,
        language: Language = None,
        focus: Annotated[str | None, Field(max_length=500)] = None,
        ctx: Context | None = None,
    ) -> Review:
        """Review code (inline 'code' or a file 'path' under the configured roots). Returns a
        summary and findings, each with severity, category (bug, security, performance, style,
        best_practice), line if known, message and suggestion. The code must fit the model's context
        next to the answer; longer code is refused with the limit this server's context sets."""
        source = take_text(app, code, path, "code")

        def review(payload: _ReviewPayload, usage: Usage) -> Review:
            return Review(
                language=language, summary=payload.summary, findings=payload.findings, usage=usage
            )

        job = GuidedJson(
            prompts.review_messages(source, language, focus),
            _ReviewPayload,
            finish=review,
            schema=review_schema(len(source.splitlines())),
            subject=Subject("code", source, prompts.review_messages("", language, focus)),
        )
        return await run(app, ctx, job)

    @declare(server, "suggest_improvements", "Suggest code improvements")
    async def suggest_improvements(
        code: Code = None,
        path: PathArg = None,
        language: Language = None,
        ctx: Context | None = None,
    ) -> Improvements:
        """Suggest a refactoring of code (inline 'code' or a file 'path' under the configured
        roots). Returns the refactored code, the list of changes and their benefits. The code must
        fit the model's context twice (it comes back refactored); longer code is refused with
        the limit this server's context sets."""
        return await run(app, ctx, Refactoring(take_text(app, code, path, "code"), language))
