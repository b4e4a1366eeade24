"""Math and reasoning: solve_problem (free text, thinking) and practice_problems (guided JSON)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field, StringConstraints

from m1_mcp import prompts
from m1_mcp.tools.answers import final_answer
from m1_mcp.tools.common import App, InputError
from m1_mcp.tools.guided_json import guided_schema
from m1_mcp.tools.runner import FreeText, GuidedJson, Usage, declare, run
from m1_runtime.engine import Generation


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


def solution_of(gen: Generation, usage: Usage) -> Solution:
    # The answer may sit only in the reasoning when the budget ran out before the answer.
    answer = final_answer(gen.text) if gen.text else final_answer(gen.reasoning)
    return Solution(answer=answer, solution=gen.text, reasoning=gen.reasoning, usage=usage)


def practice_schema(count: int) -> dict[str, Any]:
    """Exactly `count` problems: the grammar holds the model to the number asked for."""
    schema = guided_schema(_PracticePayload)
    schema["properties"]["problems"]["minItems"] = count
    schema["properties"]["problems"]["maxItems"] = count
    return schema


def register(server: MCPServer, app: App) -> None:
    @declare(server, "solve_problem", "Solve a problem")
    async def solve_problem(
        problem: Annotated[str, Field(min_length=1, max_length=20_000)],
        show_steps: bool = True,
        max_tokens: Annotated[int | None, Field(ge=16, le=1_000_000)] = None,
        ctx: Context | None = None,
    ) -> Solution:
        r"""Solve a math or reasoning problem with MiniMax-M1. Returns the final answer (from
        \boxed{} or the last line), the worked solution and the model's reasoning."""
        if not problem.strip():
            raise InputError("the problem is empty")
        job = FreeText(
            prompts.solve_messages(problem, show_steps),
            finish=solution_of,
            max_tokens=max_tokens,
            thinking=show_steps,
        )
        return await run(app, ctx, job)

    @declare(server, "practice_problems", "Practice problems")
    async def practice_problems(
        topic: Annotated[
            str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
        ],
        difficulty: prompts.Difficulty = "medium",
        count: Annotated[int, Field(ge=1, le=MAX_PROBLEMS)] = 3,
        ctx: Context | None = None,
    ) -> PracticeSet:
        """Generate practice problems on a topic, each with its answer."""

        def practice_set(payload: _PracticePayload, usage: Usage) -> PracticeSet:
            return PracticeSet(
                topic=topic, difficulty=difficulty, problems=payload.problems, usage=usage
            )

        job = GuidedJson(
            prompts.practice_messages(topic, difficulty, count),
            _PracticePayload,
            finish=practice_set,
            schema=practice_schema(count),
        )
        return await run(app, ctx, job)
