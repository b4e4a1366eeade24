"""Math and reasoning: solve_problem (free text, thinking) and practice_problems (guided JSON)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field, StringConstraints

from m1_mcp import prompts
from m1_mcp.tools.common import (
    READ_ONLY,
    App,
    InputError,
    Reporter,
    Usage,
    clamp_budget,
    generate_json,
    guided_schema,
    user_errors,
    wait_ready,
)
from m1_runtime.chat import m1 as chat
from m1_runtime.engine import GenerationRequest


class Solution(BaseModel):
    answer: str = Field(description="Final answer: the last \\boxed{} content, else the last line")
    solution: str = Field(description="The worked solution (the answer text after reasoning)")
    reasoning: str = Field(description="The model's reasoning from its <think> block")
    usage: Usage


class PracticeProblem(BaseModel):
    problem: str = Field(max_length=240, description="The problem statement")
    answer: str = Field(max_length=80, description="Its final answer")


class PracticeSet(BaseModel):
    topic: str
    difficulty: str
    problems: list[PracticeProblem]
    usage: Usage


MAX_PROBLEMS = 8  # one practice set: what a client may ask for and what the model may return


class _PracticePayload(BaseModel):
    problems: list[PracticeProblem] = Field(max_length=MAX_PROBLEMS)


def register(server: MCPServer, app: App) -> None:
    @server.tool(
        name="solve_problem",
        title="Solve a problem",
        annotations=READ_ONLY,
        description="Solve a math or reasoning problem with MiniMax-M1. Returns the final answer "
        "(from \\boxed{} or the last line), the worked solution and the model's reasoning.",
    )
    @user_errors
    async def solve_problem(
        problem: Annotated[str, Field(min_length=1, max_length=20_000)],
        show_steps: bool = True,
        max_tokens: Annotated[int | None, Field(ge=16, le=1_000_000)] = None,
        ctx: Context | None = None,
    ) -> Solution:
        if not problem.strip():  # before waiting: bad input never waits for the model
            raise InputError("the problem is empty")
        report = Reporter(ctx)
        await wait_ready(app, report)
        gen = await app.engine.generate(
            GenerationRequest(
                messages=prompts.solve_messages(problem, show_steps),
                max_tokens=clamp_budget(app, max_tokens),
                thinking=True if show_steps else False,
            ),
            on_progress=report,
        )
        # The answer may sit only in the reasoning when the budget ran out before the answer.
        answer = chat.final_answer(gen.text) if gen.text else chat.final_answer(gen.reasoning)
        return Solution(
            answer=answer, solution=gen.text, reasoning=gen.reasoning, usage=Usage.of([gen])
        )

    @server.tool(
        name="practice_problems",
        title="Practice problems",
        annotations=READ_ONLY,
        description="Generate practice problems on a topic, each with its answer.",
    )
    @user_errors
    async def practice_problems(
        topic: Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
        ],
        difficulty: prompts.Difficulty = "medium",
        count: Annotated[int, Field(ge=1, le=MAX_PROBLEMS)] = 3,
        ctx: Context | None = None,
    ) -> PracticeSet:
        report = Reporter(ctx)
        await wait_ready(app, report)
        schema = guided_schema(_PracticePayload)
        schema["properties"]["problems"]["minItems"] = count
        schema["properties"]["problems"]["maxItems"] = count
        payload, gen = await generate_json(
            app,
            prompts.practice_messages(topic, difficulty, count),
            _PracticePayload,
            report,
            schema=schema,
        )
        return PracticeSet(
            topic=topic, difficulty=difficulty, problems=payload.problems, usage=Usage.of([gen])
        )
