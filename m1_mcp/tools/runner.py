"""The one path every tool call takes, so that a tool only declares what is its own.

A tool module states its inputs (the function's signature, validated by pydantic), its prompt,
its schema and its post-processing, as a *job*; `declare` registers it and `run` carries it out:

    @declare(server, "solve_problem", "Solve a problem")
    async def solve_problem(problem: ..., ctx: Context | None = None) -> Solution:
        '''The description clients see.'''
        ...check the input (raise InputError): this runs before any waiting...
        return await run(app, ctx, FreeText(messages, finish=..., max_tokens=...))

`run` then waits for the model with progress, keeps progress going (a heartbeat) while loading,
queued, reading the prompt and generating, calls the engine, and totals the usage; `declare`
turns anticipated failures (engine, file access, input) into tool errors a caller can act on.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from m1_mcp.files import FileAccessError
from m1_mcp.tools.common import READ_ONLY, App, InputError
from m1_mcp.tools.guided_json import guided_schema, json_request, read_payload, schema_budget
from m1_mcp.tools.progress import Reporter
from m1_runtime.chat.m1 import Message
from m1_runtime.engine import (
    EngineError,
    Fit,
    Generation,
    GenerationRequest,
    Sampling,
)

Out = TypeVar("Out", bound=BaseModel)
Payload = TypeVar("Payload", bound=BaseModel)
Result = TypeVar("Result", bound=BaseModel, covariant=True)
P = ParamSpec("P")

# What progress says while a prompt is read (prefill), before the first token comes back.
READING_PROMPT = "reading the prompt"


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens in the prompt(s) sent to the model")
    completion_tokens: int = Field(description="Tokens the model generated")
    model_calls: int = Field(1, description="Generations this tool call needed")
    finish_reason: str = Field(description="'stop', or 'length' when the budget ran out")
    engine_seconds: float = Field(description="Time spent inside the engine generating")
    queue_seconds: float = Field(0.0, description="Time spent waiting for a free slot")

    @classmethod
    def of(cls, gens: list[Generation]) -> Usage:
        return cls(
            prompt_tokens=sum(g.prompt_tokens for g in gens),
            completion_tokens=sum(g.completion_tokens for g in gens),
            model_calls=len(gens),
            finish_reason="length" if any(g.finish_reason == "length" for g in gens) else "stop",
            engine_seconds=round(sum(g.engine_s for g in gens), 4),
            queue_seconds=round(sum(g.queue_s for g in gens), 4),
        )


class Call:
    """One tool call once the model is ready: the engine verbs a job uses, with progress, and
    every generation kept for the usage."""

    def __init__(self, app: App, report: Reporter) -> None:
        self.app = app
        self.engine = app.engine
        self.report = report
        self.generations: list[Generation] = []

    def clamp(self, requested: int | None) -> int:
        """The caller's output budget (or the default), within the server's limit."""
        s = self.app.settings
        value = s.default_max_tokens if requested is None else requested
        return max(1, min(value, s.max_max_tokens))

    async def fit(self, request: GenerationRequest) -> Fit:
        return await self.engine.fit(request)

    async def generate(self, request: GenerationRequest) -> Generation:
        self.report.message = READING_PROMPT
        gen = await self.engine.generate(request, on_progress=self.report)
        self.generations.append(gen)
        return gen

    async def generate_json(
        self,
        messages: list[Message],
        model: type[Payload],
        schema: dict[str, Any] | None = None,
        budget: int | None = None,
    ) -> Payload:
        """Guided decoding into `model`; the budget is the schema's bound unless given."""
        schema = schema or guided_schema(model)
        budget = schema_budget(schema) if budget is None else budget
        return read_payload(model, await self.generate(json_request(messages, schema, budget)))

    def usage(self) -> Usage:
        return Usage.of(self.generations)


class Job(Protocol[Result]):
    """What a tool asks of the model, and how the answer becomes the tool's result."""

    async def run(self, call: Call) -> Result: ...


@dataclass
class FreeText(Generic[Out]):
    """One free-text generation; `finish` makes the result of it and the usage."""

    messages: list[Message]
    finish: Callable[[Generation, Usage], Out]
    max_tokens: int | None = None  # the caller's request; None: the server's default
    tools: list[dict[str, Any]] | None = None
    sampling: Sampling = field(default_factory=Sampling)
    thinking: bool | None = None

    async def run(self, call: Call) -> Out:
        gen = await call.generate(
            GenerationRequest(
                messages=self.messages,
                tools=self.tools,
                max_tokens=call.clamp(self.max_tokens),
                sampling=self.sampling,
                thinking=self.thinking,
            )
        )
        return self.finish(gen, call.usage())


@dataclass(frozen=True)
class Subject:
    """The input a prompt is built around (code, a text), for a too-long error in its terms."""

    what: str  # "code", "text"
    text: str
    frame: list[Message]  # the same prompt with the subject left out


@dataclass
class GuidedJson(Generic[Payload, Out]):
    """One guided-JSON generation into `payload`; `finish` makes the result of it and the usage."""

    messages: list[Message]
    payload: type[Payload]
    finish: Callable[[Payload, Usage], Out]
    schema: dict[str, Any] | None = None  # None: the payload's own, every property required
    subject: Subject | None = None  # checked against the context before generating

    async def run(self, call: Call) -> Out:
        schema = self.schema or guided_schema(self.payload)
        budget = schema_budget(schema)
        if self.subject is not None:
            request = json_request(self.messages, schema, budget)
            await check_subject_fits(call, self.subject, request)
        payload = await call.generate_json(self.messages, self.payload, schema, budget)
        return self.finish(payload, call.usage())


async def check_subject_fits(call: Call, subject: Subject, request: GenerationRequest) -> Fit:
    """The request's fit; an InputError naming the limit, in the subject's tokens and about how
    many of its characters, when the prompt and the answer budget overflow the context."""
    fit = await call.fit(request)
    if fit.spare >= 0:
        return fit
    frame = await call.fit(
        GenerationRequest(
            messages=subject.frame,
            max_tokens=request.max_tokens,
            json_schema=request.json_schema,
            tools=request.tools,
            thinking=request.thinking,
        )
    )
    raise InputError(too_long(subject, fit.prompt_tokens - frame.prompt_tokens, frame.spare, fit))


def too_long(subject: Subject, tokens: int, room: int, fit: Fit) -> str:
    """An honest refusal: how large the subject is, and the most this context takes."""
    room = max(room, 0)
    chars = len(subject.text) * room // max(tokens, 1)
    return (
        f"the {subject.what} is {tokens} tokens ({len(subject.text)} characters); next to the "
        f"instructions and an answer of up to {fit.answer_budget} tokens, this server's "
        f"{fit.context}-token context leaves room for {room} tokens of {subject.what} (about "
        f"{chars} characters like these). Send less {subject.what}, or start the server "
        "with a larger max_model_len"
    )


async def run(app: App, ctx: Context | None, job: Job[Out]) -> Out:
    """Carry out a tool's job: wait for the model, run the job, with progress all along."""
    report = Reporter(ctx)
    await report.accepted()
    async with report.heartbeat(app.heartbeat_s):
        await app.engine.wait_ready(report, timeout_s=app.settings.startup_timeout_s)
        return await job.run(Call(app, report))


def declare(
    server: MCPServer, name: str, title: str
) -> Callable[[Callable[P, Awaitable[Out]]], Callable[P, Awaitable[Out]]]:
    """Register a tool: read-only, described by its docstring, anticipated failures (engine,
    file access, input) turned into tool errors whose text the caller can act on."""

    def register(fn: Callable[P, Awaitable[Out]]) -> Callable[P, Awaitable[Out]]:
        @wraps(fn)
        async def tool(*args: P.args, **kwargs: P.kwargs) -> Out:
            try:
                return await fn(*args, **kwargs)
            except (EngineError, FileAccessError, InputError) as exc:
                raise ToolError(str(exc)) from exc

        description = " ".join((inspect.getdoc(fn) or "").split())
        server.tool(name=name, title=title, annotations=READ_ONLY, description=description)(tool)
        return tool

    return register
